"""The `tunewright` command: one sub-command per lifecycle verb.

This is the only place that turns argv and YAML into calls, and the only place that turns
failures into exit codes: a usage error (a mistyped verb or option, a missing argument)
and every `UserError` become one message on stderr and exit code 2, a file the command
cannot read or write becomes one message naming the path (exit 2), a failed gate or check
exit code 1, Ctrl-C exit code 130. None of them prints a traceback.

The pinned typer carries its own copy of click, so its usage errors are caught through
`typer.TyperException` (their common base), never through the `click` package.
"""

from __future__ import annotations

import sys

import typer

from tunewright import __version__
from tunewright.cli import (
    card,
    config_cmd,
    curate,
    eval_cmd,
    export,
    init,
    launch,
    monitor,
    pipeline,
    promote,
    quickstart,
    registry,
    review,
    runs,
    serve,
    train,
)
from tunewright.cli.common import set_command_line
from tunewright.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CheckFailed, UserError, describe_os_error

app = typer.Typer(
    name="tunewright",
    help="Curate data, fine-tune, evaluate, export and serve open LLMs, with a paper trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (
    init,
    curate,
    train,
    launch,
    eval_cmd,
    export,
    promote,
    card,
    serve,
    monitor,
    review,
    pipeline,
    runs,
    registry,
    config_cmd,
    quickstart,
):
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


def usage_message(exc: typer.TyperException) -> str:
    """One line for a usage error: what was wrong and where to look for the right usage."""
    ctx = getattr(exc, "ctx", None)
    text = " ".join(exc.format_message().split())
    return f"error: {text} (see '{ctx.command_path} --help')" if ctx is not None else f"error: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (0 ok, 1 check failed, 2 usage or input error, 130 Ctrl-C)."""
    set_command_line(argv)
    try:
        code = app(args=argv, prog_name="tunewright", standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            print(usage_message(exc), file=sys.stderr)
        return EXIT_USAGE
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except CheckFailed as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        print("interrupted", file=sys.stderr)
    return code if isinstance(code, int) else EXIT_OK


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
