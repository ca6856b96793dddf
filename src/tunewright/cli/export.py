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
    name: str = typer.Option(
        None, "--name", "-n", help="Export name: a new version goes to exports/<name>/v<N> (default: <run>-<format>)."
    ),
    golden: Path = typer.Option(
        Path("data/raw/eval/golden.jsonl"), "--golden", help="Golden prompts re-run on the export."
    ),
    allow_failed_eval: bool = typer.Option(
        False, "--allow-failed-eval", help="Export even though the run's latest eval failed a gate (recorded)."
    ),
    max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="Merged: safetensors shards of at most this."),
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
        "allow_failed_eval": allow_failed_eval,
        "max_shard_size": max_shard_size,
    }
    with start_run(ws, "export", command_line(), config) as run:
        parity, out_dir = run_export(
            ws, run_ref, fmt, name, resolve(ws, golden), run, allow_failed_eval, max_shard_size
        )
    for warning in run.results["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    verdict = run.results["eval"]
    evaluated = "not evaluated"
    if verdict is not None:
        evaluated = f"eval {verdict['run_id']} {'passed' if verdict['passed'] else 'FAILED, allowed'}"
    typer.echo(
        f"exported {fmt} model to exports/{out_dir.parent.name}/{out_dir.name} ({evaluated}); golden prompts identical "
        f"({parity.prompts}/{parity.prompts}). Run {run.run_id}"
    )
