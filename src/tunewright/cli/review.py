"""`tunewright eval export-review RUN` and `tunewright eval import-review RUN FILE`: blind human review."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path
from tunewright.core.runs import find_run, start_run

review_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


@review_app.command("export-review")
def export_review_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="The eval run (id, path or latest:eval)."),
    out: Path = typer.Option(None, "--out", "-o", help="Directory for review.csv/.jsonl (default: reviews/<RUN>)."),
    workspace: Path = WORKSPACE,
) -> None:
    """Write shuffled, unlabelled A/B pairs of the model's and the baseline's answers for expert review."""
    from tunewright.core.workspace import resolve
    from tunewright.evaluate.review import export_review

    ws = workspace_path(workspace)
    eval_id = find_run(ws, run_ref).name
    out_dir = resolve(ws, str(out)) if out else ws / "reviews" / eval_id
    with start_run(ws, "review", command_line(), {"eval_run": eval_id, "out": str(out_dir)}) as run:
        n = export_review(ws, run_ref, out_dir, run)
    typer.echo(f"{n} pairs for blind review in {out_dir}/review.csv (and review.jsonl); key kept in run {run.run_id}")
    typer.echo("fill the 'preferred' column with A, B or tie, then: tunewright eval import-review RUN FILE")


@review_app.command("import-review")
def import_review_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="The eval run that was exported for review."),
    judged: Path = typer.Argument(..., metavar="FILE", help="The filled-in review.csv or review.jsonl."),
    preferences: Path = typer.Option(
        None, "--preferences", help="PreferencePair JSONL to write (default: data/preferences/review-<RUN>.jsonl)."
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Read reviewers' judgments: model win rate (with CI) into the eval report, preference pairs for DPO."""
    from tunewright.core.workspace import resolve
    from tunewright.evaluate.review import import_review

    ws = workspace_path(workspace)
    eval_id = find_run(ws, run_ref).name
    prefs = resolve(ws, str(preferences)) if preferences else ws / "data" / "preferences" / f"review-{eval_id}.jsonl"
    source = judged.resolve() if judged.exists() else resolve(ws, judged)
    with start_run(ws, "review", command_line(), {"eval_run": eval_id, "judgments": str(source)}) as run:
        r = import_review(ws, run_ref, source, prefs, run)
    w = r["win_rate"]
    typer.echo(
        f"{r['judged']} judged ({r['ties']} ties, {r['skipped']} blank): model win rate {w['value']:.3f} "
        f"[{w['low']:.3f}, {w['high']:.3f}]; preference pairs in {prefs}; report updated"
    )
