"""Options and helpers every verb shares: workspace, config file, overrides, the run record."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

WORKSPACE = typer.Option(
    None, "--workspace", "-w", help="Workspace directory (default: $TUNEWRIGHT_WORKSPACE or the current directory)."
)


def config_option(default_name: str) -> typer.models.OptionInfo:
    """The `--config/-c` option of a verb whose default is `configs/<default_name>`."""
    return typer.Option(None, "--config", "-c", help=f"Config file (default: configs/{default_name}).")


OVERRIDES = typer.Argument(None, help="key.path=value overrides applied on top of the YAML config.")


def workspace_path(option: Path | None) -> Path:
    """The workspace: the option, else $TUNEWRIGHT_WORKSPACE, else the current directory."""
    return (option or Path(os.environ.get("TUNEWRIGHT_WORKSPACE", "."))).resolve()


def config_path(workspace: Path, given: Path | None, default_name: str) -> Path:
    """The config file: as given (relative to the workspace if not found as is) or the default."""
    if given is None:
        return workspace / "configs" / default_name
    if given.is_absolute() or given.exists():
        return given.resolve()
    return workspace / given


_argv: list[str] = []


def set_command_line(argv: list[str] | None) -> None:
    """Remember the arguments of the command being run (main() calls this)."""
    _argv[:] = sys.argv[1:] if argv is None else argv


def command_line() -> list[str]:
    """The command line that started this command, for the manifest."""
    return ["tunewright", *_argv]
