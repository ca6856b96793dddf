"""Errors the CLI turns into one clear message instead of a traceback.

A `UserError` means the user can fix it (a bad config, a missing file, a malformed
record); the CLI prints its message and exits with code 2. A `CheckFailed` means the
command ran correctly but a gate or parity check did not pass; the CLI exits with 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input that they can fix; printed without a traceback."""

    exit_code = EXIT_USAGE


class ConfigError(UserError):
    """A configuration file or override that does not validate."""


class DataError(UserError):
    """Input data that cannot be used (missing file, wrong shape, nothing usable left)."""


class CheckFailed(Exception):
    """A gate or parity check that ran and did not pass."""

    exit_code = EXIT_CHECK_FAILED


def describe_os_error(exc: OSError) -> str:
    """`cannot use <path>: <reason>` for a file-system error, naming every path involved."""
    reason = exc.strerror or str(exc)
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return reason
    return f"cannot use {' -> '.join(str(p) for p in paths)}: {reason}"


class WorkFailed(CheckFailed):
    """A piece of distributed work failed (a task raised, or its worker died); what finished is kept."""
