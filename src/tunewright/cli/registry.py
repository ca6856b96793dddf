"""`tunewright registry`: the workspace's index of export versions, their runs and verdicts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tunewright.cli.common import WORKSPACE, workspace_path

registry_app = typer.Typer(help="The registry (registry.db): export versions, lineage, verdicts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")


@registry_app.command("list")
def list_cmd(
    name: str = typer.Argument(None, help="One export name (default: all)."), workspace: Path = WORKSPACE
) -> None:
    """Every version of every export name, with its training run and that run's latest eval verdict."""
    from tunewright.core.registry import open_registry

    with open_registry(workspace_path(workspace)) as registry:
        names = [name] if name else registry.export_names()
        rows = [(n, v) for n in names for v in registry.export_versions(n)]
    table = Table("export", "version", "aliases", "format", "training run", "latest eval", "parity", "export run")
    for n, v in rows:
        table.add_row(
            n,
            f"v{v['version']}",
            v["aliases"] or "",
            v["format"] or "",
            v["source_run"] or "",
            v["latest_eval"] or "not evaluated",
            "passed" if v["parity_passed"] else "FAILED",
            v["export_run"],
        )
    Console(width=200).print(table)
