"""`tunewright init DIR`: scaffold a workspace with commented example configs."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.core.workspace import init_workspace


def register(app: typer.Typer) -> None:
    app.command("init")(init_cmd)


def init_cmd(
    directory: Path = typer.Argument(..., help="Workspace directory to create."),
    sample: bool = typer.Option(False, "--sample", help="Also write the embedded sample data and tiny base model."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing configs with the examples."),
) -> None:
    """Create the workspace layout: data/, configs/, runs/, exports/, reports/."""
    init_workspace_dir(directory.resolve(), sample, force)


def init_workspace_dir(root: Path, sample: bool = False, force: bool = False) -> None:
    """Scaffold the workspace at `root` (with the sample data and tiny base model when `sample`), and say so."""
    written = init_workspace(root, force=force)
    typer.echo(f"workspace {root}: {len(written)} config(s) written")
    if sample:
        from tunewright.demo.setup import prepare_sample

        base = prepare_sample(root)
        typer.echo(f"sample data in {root / 'data/raw'}; tiny base model in {base}")
