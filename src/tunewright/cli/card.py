"""`tunewright card NAME[@VERSION]`: the model card and release notes of an export version."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path
from tunewright.core.runs import Run


def register(app: typer.Typer) -> None:
    app.command("card")(card_cmd)


def card_cmd(
    ref: str = typer.Argument(
        ..., metavar="NAME[@VERSION]", help="NAME (its production version, else its latest), NAME@v3, NAME@staging…"
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Write reports/model-card.md and reports/release-notes.md (against the previous production version),
    generated from the registry and the run records."""
    from tunewright.release.paper_trail import write_card

    ws = workspace_path(workspace)
    report(ws, *write_card(ws, ref, command_line()))


def report(ws: Path, run: Run, card: Path, notes: Path) -> None:
    """Where the card and the notes went, as the CLI prints it."""
    typer.echo(f"{run.results['model']}: model card {card.relative_to(ws)}, release notes {notes.relative_to(ws)}")
