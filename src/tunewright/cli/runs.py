"""`tunewright runs`: list run records, show one manifest, trace a run's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunewright.cli.common import WORKSPACE, workspace_path
from tunewright.core.runs import find_run, lineage, list_manifests, load_manifest

runs_app = typer.Typer(help="Inspect run records: what ran, on what, from which parents.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def list_cmd(workspace: Path = WORKSPACE) -> None:
    """Every completed run, oldest first."""
    table = Table("run", "stage", "started", "seconds", "parents")
    for m in sorted(list_manifests(workspace_path(workspace)), key=lambda m: m["started_at"]):
        table.add_row(m["run_id"], m["stage"], m["started_at"][:19], f"{m['duration_s']:.1f}", ", ".join(m["parents"]))
    Console(width=200).print(table)


@runs_app.command("show")
def show_cmd(
    run: str = typer.Argument(..., help="Run id, path or latest[:stage]."), workspace: Path = WORKSPACE
) -> None:
    """Print a run's manifest as JSON."""
    typer.echo(json.dumps(load_manifest(find_run(workspace_path(workspace), run)), indent=2))


@runs_app.command("lineage")
def lineage_cmd(
    run: str = typer.Argument(..., help="Run id, path or latest[:stage]."), workspace: Path = WORKSPACE
) -> None:
    """The run and every run it descends from (export -> train -> curate -> ...)."""
    ws = workspace_path(workspace)
    run_id = load_manifest(find_run(ws, run))["run_id"]
    for depth, m in lineage(ws, run_id):
        typer.echo(f"{'  ' * depth}{m['stage']:8} {m['run_id']}  ({m['started_at'][:19]}, {len(m['inputs'])} inputs)")
