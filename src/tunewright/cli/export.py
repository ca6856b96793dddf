"""`tunewright export RUN`: merged model or adapter, checked against golden prompts."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path
from tunewright.core.runs import start_run
from tunewright.core.workspace import resolve


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    run_ref: str = typer.Argument("latest:train", help="Training run id or path (default: the latest)."),
    fmt: str = typer.Option("merged", "--format", "-f", help="merged | adapter"),
    name: str = typer.Option(None, "--name", "-n", help="Directory name under exports/ (default: <run>-<format>)."),
    golden: Path = typer.Option(
        Path("data/raw/eval/golden.jsonl"), "--golden", help="Golden prompts re-run on the export."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export of the same name."),
    allow_failed_eval: bool = typer.Option(
        False, "--allow-failed-eval", help="Export even though the run's latest eval failed a gate (recorded)."
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Export a trained model; refuses a run whose latest eval failed, and fails (exit 1) on a parity mismatch."""
    from tunewright.export.stage import run_export

    ws = workspace_path(workspace)
    config = {
        "run": run_ref,
        "format": fmt,
        "name": name,
        "golden": str(golden),
        "overwrite": overwrite,
        "allow_failed_eval": allow_failed_eval,
    }
    with start_run(ws, "export", command_line(), config) as run:
        parity, out_dir = run_export(ws, run_ref, fmt, name, resolve(ws, golden), run, overwrite, allow_failed_eval)
    verdict = run.results["eval"]
    evaluated = "not evaluated"
    if verdict is not None:
        evaluated = f"eval {verdict['run_id']} {'passed' if verdict['passed'] else 'FAILED, allowed'}"
    typer.echo(
        f"exported {fmt} model to exports/{out_dir.name} ({evaluated}); golden prompts identical "
        f"({parity.prompts}/{parity.prompts}). Run {run.run_id}"
    )
