"""`tunewright export RUN`: merged model or adapter, checked against golden prompts."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path
from tunewright.core.io import write_json
from tunewright.core.runs import load_manifest, start_run
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
    workspace: Path = WORKSPACE,
) -> None:
    """Export a trained adapter; fail (exit 1) if the export answers golden prompts differently."""
    from tunewright.export.stage import run_export

    ws = workspace_path(workspace)
    config = {"run": run_ref, "format": fmt, "name": name, "golden": str(golden)}
    with start_run(ws, "export", command_line(), config) as run:
        parity, out_dir = run_export(ws, run_ref, fmt, name, resolve(ws, golden), run)
    write_json(out_dir / "manifest.json", load_manifest(run.final_dir))
    typer.echo(
        f"exported {fmt} model to exports/{out_dir.name}; golden prompts identical "
        f"({parity.prompts}/{parity.prompts}). Run {run.run_id}"
    )
