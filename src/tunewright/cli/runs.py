"""`tunewright runs`: list run records, show one manifest, trace a run's lineage, diff two runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunewright.cli.common import WORKSPACE, workspace_path
from tunewright.core.manifest import list_manifests, load_manifest, run_order
from tunewright.core.runs import diff_manifests, find_run, lineage

RUN_REF = "Run id, path, latest[:stage], or an export version (NAME@v2, NAME@production, exports/NAME)."
runs_app = typer.Typer(help="Inspect run records: what ran, on what, from which parents.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def list_cmd(workspace: Path = WORKSPACE) -> None:
    """Every completed run, oldest first."""
    table = Table("run", "stage", "started", "seconds", "parents")
    for m in sorted(list_manifests(workspace_path(workspace)), key=run_order):
        table.add_row(m["run_id"], m["stage"], m["started_at"][:19], f"{m['duration_s']:.1f}", ", ".join(m["parents"]))
    Console(width=200).print(table)


@runs_app.command("show")
def show_cmd(run: str = typer.Argument(..., help=RUN_REF), workspace: Path = WORKSPACE) -> None:
    """Print a run's manifest as JSON."""
    typer.echo(json.dumps(load_manifest(find_run(workspace_path(workspace), run)), indent=2))


@runs_app.command("lineage")
def lineage_cmd(run: str = typer.Argument(..., help=RUN_REF), workspace: Path = WORKSPACE) -> None:
    """The run and every run it descends from (export -> train -> curate -> ...), down to each raw source
    and base model with its license."""
    from tunewright.release.policy import provenance

    ws = workspace_path(workspace)
    run_id = load_manifest(find_run(ws, run))["run_id"]
    for depth, m in lineage(ws, run_id):
        typer.echo(f"{'  ' * depth}{m['stage']:8} {m['run_id']}  ({m['started_at'][:19]}, {len(m['inputs'])} inputs)")
        for line in provenance(ws, m):
            typer.echo(f"{'  ' * (depth + 1)}- {line}")


@runs_app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., help=RUN_REF),
    b: str = typer.Argument(..., help="The run to compare it with."),
    workspace: Path = WORKSPACE,
) -> None:
    """What differs between two runs: every config key and every result (metric) whose value changed."""
    ws = workspace_path(workspace)
    left, right = load_manifest(find_run(ws, a)), load_manifest(find_run(ws, b))
    typer.echo(f"{left['stage']} {left['run_id']}  ->  {right['stage']} {right['run_id']}")
    for part, rows in diff_manifests(left, right).items():
        typer.echo(f"\n{part}: {len(rows)} difference(s)")
        for key, old, new in rows:
            change = f"{old} -> {new}"
            if isinstance(old, int | float) and isinstance(new, int | float) and not isinstance(old, bool):
                change += f" ({new - old:+.4g})"
            typer.echo(f"  {key}: {change}")
