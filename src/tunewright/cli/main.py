"""The `tunewright` command: one sub-command per lifecycle verb.

This is the only place that turns argv and YAML into calls. `UserError` becomes one
message on stderr and exit code 2, a failed gate or check becomes exit code 1.
"""

from __future__ import annotations

import sys

import click
import typer

from tunewright import __version__
from tunewright.cli import curate, eval_cmd, export, init, quickstart, runs, serve, train
from tunewright.cli.common import set_command_line
from tunewright.core.errors import EXIT_USAGE, CheckFailed, UserError

app = typer.Typer(
    name="tunewright",
    help="Curate data, fine-tune, evaluate, export and serve open LLMs, with a paper trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (init, curate, train, eval_cmd, export, serve, runs, quickstart):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"tunewright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """tunewright: raw data to a served, evaluated, fine-tuned LLM."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 check failed, 2 usage or input error)."""
    set_command_line(argv)
    try:
        code = app(args=argv, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return exc.exit_code
    return code if isinstance(code, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
