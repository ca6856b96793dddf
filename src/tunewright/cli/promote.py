"""`tunewright promote` and `tunewright rollback`: move a model name's alias, gated and recorded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tunewright.cli.common import WORKSPACE, workspace_path
from tunewright.core.errors import UserError

if TYPE_CHECKING:
    from tunewright.release.promote import Decision

ALIAS_HELP = "The alias to move: candidate, staging or production."


def register(app: typer.Typer) -> None:
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)


def _check_alias(alias: str) -> None:
    from tunewright.core.registry import ALIASES

    if alias not in ALIASES:
        raise UserError(f"--to {alias!r}: expected one of {', '.join(ALIASES)}")


def promote_cmd(
    ref: str = typer.Argument(..., metavar="NAME[@VERSION]", help="An export name (its latest version) or NAME@v<N>."),
    to: str = typer.Option(..., "--to", help=ALIAS_HELP),
    reason: str = typer.Option("", "--reason", help="Why (recorded with who and when)."),
    license_reviewed: bool = typer.Option(
        False, "--license-reviewed", help="Licenses the policy marks for review were reviewed (recorded)."
    ),
    require_replay: bool = typer.Option(
        False, "--require-replay", help="Also require a GO on a replay of production traffic (eval --replay)."
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Point NAME@ALIAS at a version: refused (exit 1, every reason listed) unless its parity passed and its
    newest eval against the alias's current version (or base) is GO and the license policy allows it."""
    from tunewright.release.promote import PromoteConfig, promote_version

    _check_alias(to)
    cfg = PromoteConfig(ref=ref, to=to, reason=reason, license_reviewed=license_reviewed, require_replay=require_replay)
    report(promote_version(workspace_path(workspace), cfg))


def report(decision: Decision) -> None:
    """The alias move, as the CLI prints it."""
    was = f"v{decision.current}" if decision.current is not None else "unset"
    typer.echo(f"{decision.name}@{decision.alias}: {was} -> v{decision.version} (eval {decision.eval_run})")


def rollback_cmd(
    name: str = typer.Argument(..., metavar="NAME", help="The export name."),
    to: str = typer.Option(..., "--to", help=ALIAS_HELP),
    reason: str = typer.Option("", "--reason", help="Why (recorded with who and when)."),
    workspace: Path = WORKSPACE,
) -> None:
    """Return NAME@ALIAS to the version it held before the current one was promoted."""
    from tunewright.release.promote import rollback

    _check_alias(to)
    current, previous = rollback(workspace_path(workspace), name, to, reason)
    typer.echo(f"{name}@{to}: v{current} -> v{previous} (rolled back)")
