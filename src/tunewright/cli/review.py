"""`tunewright eval export-review RUN` and `tunewright eval import-review RUN FILE`: blind human review."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path
from tunewright.core.runs import find_run, start_run

PREFERENCES = typer.Option(
    None, "--preferences", help="PreferencePair JSONL to write (default: data/preferences/review-<RUN>.jsonl)."
)


def _preferences_path(ws: Path, eval_id: str, preferences: Path | None) -> Path:
    from tunewright.core.workspace import resolve

    return resolve(ws, str(preferences)) if preferences else ws / "data" / "preferences" / f"review-{eval_id}.jsonl"


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
    preferences: Path = PREFERENCES,
    workspace: Path = WORKSPACE,
) -> None:
    """Read reviewers' judgments: model win rate (with CI) into the eval report, preference pairs for DPO."""
    from tunewright.core.workspace import resolve
    from tunewright.evaluate.review import import_review

    ws = workspace_path(workspace)
    eval_id = find_run(ws, run_ref).name
    prefs = _preferences_path(ws, eval_id, preferences)
    source = judged.resolve() if judged.exists() else resolve(ws, judged)
    with start_run(ws, "review", command_line(), {"eval_run": eval_id, "judgments": str(source)}) as run:
        r = import_review(ws, run_ref, source, prefs, run)
    w = r["win_rate"]
    typer.echo(
        f"{r['judged']} judged ({r['ties']} ties, {r['skipped']} blank): model win rate {w['value']:.3f} "
        f"[{w['low']:.3f}, {w['high']:.3f}]; preference pairs in {prefs}; report updated"
    )


web_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="review", help="Blind review of an eval or replay run in the browser.")


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web_app.command("serve")
def serve_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="The eval or replay run (id, path or latest:eval)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; any but loopback needs a token."),
    port: int = typer.Option(8100, "--port", "-p", help="Port (0 picks a free one)."),
    token_env: str = typer.Option(
        None, "--token-env", help="Environment variable holding the token (default: one is made for non-loopback)."
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Serve the blind review page at / until Ctrl-C: one prompt, two unnamed answers, A / B / tie / both bad
    by keyboard; judgments kept in reviews/<RUN>/judgments.jsonl, so a review resumes where it stopped."""
    import os
    import secrets

    import uvicorn

    from tunewright.core.errors import UserError
    from tunewright.evaluate.judgments import open_session
    from tunewright.evaluate.review_server import create_review_app
    from tunewright.runtimes.net import free_port

    ws = workspace_path(workspace)
    session = open_session(ws, run_ref)
    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise UserError(f"--token-env: the environment variable {token_env} is not set")
    elif not _loopback(host):
        token = secrets.token_urlsafe(24)
    port = port or free_port(host)
    query = f"?token={token}" if token else ""
    typer.echo(f"reviewing {session.eval_id}: {len(session.rows)} pairs; open http://{host}:{port}/{query}", err=True)
    typer.echo(f"judgments go to {session.log.path}; then: tunewright review export {session.eval_id}", err=True)
    uvicorn.run(create_review_app(session, token), host=host, port=port, log_level="warning")


@web_app.command("export")
def export_cmd(
    run_ref: str = typer.Argument(..., metavar="RUN", help="The reviewed eval or replay run."),
    preferences: Path = PREFERENCES,
    workspace: Path = WORKSPACE,
) -> None:
    """Win rates per reviewer and overall and agreement into the eval report; judgments as preference pairs."""
    from tunewright.evaluate.judgments import export_judgments

    ws = workspace_path(workspace)
    eval_id = find_run(ws, run_ref).name
    prefs = _preferences_path(ws, eval_id, preferences)
    with start_run(ws, "review", command_line(), {"eval_run": eval_id, "preferences": str(prefs)}) as run:
        r = export_judgments(ws, run_ref, prefs, run)
    w = r["win_rate"]
    kappa = r["agreement"]["mean_kappa"]
    typer.echo(
        f"{r['judged']} pairs judged by {len(r['reviewers'])} reviewer(s): model win rate {w['value']:.3f} "
        f"[{w['low']:.3f}, {w['high']:.3f}]"
        + (f", mean kappa {kappa:.2f}" if kappa is not None else "")
        + f"; {run.results['preferences']} written; report updated (run {run.run_id})"
    )
