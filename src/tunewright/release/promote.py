"""Gated alias moves: `promote NAME[@VERSION] --to ALIAS` and `rollback NAME --to ALIAS`.

A version is promoted only when every check holds, and each failed check is named:
- the version exists in the registry and its export passed parity;
- its newest evaluation *against the version the alias holds now* (against `base` when the
  alias is unset) is GO. The evaluated model may be the export itself or the training run
  it was exported from; the baseline must be that exact version, compared by its files'
  path, so an eval against an older version or another model does not count;
- the license policy (`release/policy.py`) allows the base model's and every data source's
  license, or a person acknowledged the ones that need review (`--license-reviewed`).
Every move, rollbacks included, is recorded with who (`$USER`), when and why. A rollback
returns the alias to the version it held before the current one was promoted.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import field_validator

from tunewright.core.config import StrictModel
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.export_versions import VersionRef, parse_ref, version_number
from tunewright.core.registry import ALIASES, Registry, open_registry
from tunewright.release.policy import lineage_licenses, load_policy


class PromoteConfig(StrictModel):
    """What `tunewright promote` was asked: which version, to which alias, why, and whether licenses were reviewed."""

    ref: str
    """An export name (its latest version) or NAME@v<N>."""
    to: str
    """The alias to move: candidate, staging or production."""
    reason: str = ""
    """Why (recorded with who and when)."""
    license_reviewed: bool = False
    """Licenses the policy marks for review were reviewed (recorded)."""
    require_replay: bool = False
    """Also require a GO on a replay of production traffic against the alias's current version."""

    @field_validator("to")
    @classmethod
    def _known_alias(cls, alias: str) -> str:
        if alias not in ALIASES:
            raise ValueError(f"expected one of {', '.join(ALIASES)}")
        return alias


@dataclass
class Decision:
    name: str
    version: int
    alias: str
    current: int | None
    reasons: list[str] = field(default_factory=list)
    eval_run: str | None = None
    licenses: list[tuple[str, str | None, str]] = field(default_factory=list)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _target(workspace: Path, ref: str) -> VersionRef:
    parsed = parse_ref(ref) or VersionRef(ref)
    if parsed.is_alias:
        raise UserError(f"{ref}: promote takes NAME or NAME@v<N>, not an alias")
    version_number(workspace, parsed)  # the name and version exist
    return parsed


def decide(
    workspace: Path, ref: str, alias: str, license_reviewed: bool = False, require_replay: bool = False
) -> Decision:
    """Whether `ref` may become `alias`, with every reason it may not."""
    target = _target(workspace, ref)
    name = target.name
    with open_registry(workspace) as registry:
        rows = {v["version"]: v for v in registry.export_versions(name)}
        if not rows:
            raise UserError(f"export {name!r} has no version in the registry")
        version = target.number if target.number is not None else max(rows)
        if version not in rows:
            raise UserError(f"export {name!r} has no version v{version}; it has {', '.join(f'v{v}' for v in rows)}")
        row, current = rows[version], registry.alias_version(name, alias)
        decision = Decision(name, version, alias, current)
        if current == version:
            decision.reasons.append(f"{name}@{alias} is already v{version}")
            return decision
        if not row["parity_passed"]:
            decision.reasons.append(f"v{version} did not pass the export parity check")
        version_path = str((workspace / "exports" / name / f"v{version}").resolve())
        against = "base" if current is None else str((workspace / "exports" / name / f"v{current}").resolve())
        label = "base" if current is None else f"v{current} (the current {alias})"
        found = registry.newest_eval(version_path, row["source_run"], against)
        if found is None:
            baseline = "base" if current is None else f"{name}@{alias}"
            decision.reasons.append(
                f"v{version} has no evaluation against {label}: tunewright eval --model {name}@v{version} "
                f"--baseline {baseline}"
            )
        else:
            newest = found[0]
            decision.eval_run = newest.run_id
            if not newest.passed:
                decision.reasons.append(
                    f"the newest evaluation of v{version} against {label} ({newest.run_id}) is {newest.verdict}: "
                    f"gate(s) {newest.failing()}"
                )
        if require_replay:
            _check_replay(registry, name, version, version_path, row["source_run"], current, against, decision)
        _check_licenses(workspace, registry, row, decision, license_reviewed)
    return decision


def _check_replay(
    registry: Registry,
    name: str,
    version: int,
    version_path: str,
    source_run: str | None,
    current: int | None,
    against: str,
    decision: Decision,
) -> None:
    """The newest replay of production traffic against the alias's current version must be GO."""
    if current is None:
        decision.reasons.append(f"nothing serves {name}@{decision.alias} yet, so there is no traffic to replay")
        return
    found = registry.newest_eval(version_path, source_run, against, replay=True)
    if found is None:
        decision.reasons.append(
            f"v{version} has no replay of production traffic against v{current}: "
            f"tunewright eval --replay latest --model {name}@v{version}"
        )
    elif not found[0].passed:
        decision.reasons.append(
            f"the newest replay of v{version} ({found[0].run_id}) is {found[0].verdict}: gate(s) {found[0].failing()}"
        )


def _check_licenses(
    workspace: Path, registry: Registry, row: dict[str, Any], decision: Decision, license_reviewed: bool
) -> None:
    if not row["source_run"]:
        return
    policy = load_policy(workspace)
    for what, license_id in lineage_licenses(workspace, row["source_run"], registry.ancestors(row["source_run"])):
        verdict = policy.classify(license_id)
        decision.licenses.append((what, license_id, verdict))
        shown = license_id or "unknown"
        if verdict == "forbidden":
            decision.reasons.append(f"{what}: license {shown} is forbidden by the license policy (configs/policy.yaml)")
        elif verdict == "needs_review" and not license_reviewed:
            decision.reasons.append(
                f"{what}: license {shown} needs review under the license policy; pass --license-reviewed once done"
            )


def promote_version(workspace: Path, cfg: PromoteConfig) -> Decision:
    """`tunewright promote` as a library call: decide, and move the alias only if nothing stands against it
    (a CheckFailed listing every reason otherwise)."""
    decision = decide(workspace, cfg.ref, cfg.to, cfg.license_reviewed, cfg.require_replay)
    if decision.reasons:
        raise CheckFailed(
            f"{decision.name}@v{decision.version} not promoted to {cfg.to}:\n"
            + "\n".join(f"  - {r}" for r in decision.reasons)
        )
    promote(workspace, decision, cfg.reason)
    return decision


def promote(workspace: Path, decision: Decision, reason: str) -> None:
    """Move the alias (only call with a decision that has no reasons against it)."""
    reviewed = [f"{what}: {lic}" for what, lic, verdict in decision.licenses if verdict == "needs_review"]
    if reviewed:
        reason = f"{reason} [license review acknowledged: {'; '.join(reviewed)}]".strip()
    with open_registry(workspace) as registry:
        registry.move_alias(decision.name, decision.alias, decision.version, _user(), reason, "promote")


def rollback(
    workspace: Path, name: str, alias: str, reason: str, fallback: int | None = None, kind: str = "rollback"
) -> tuple[int, int]:
    """Return `name@alias` to the version it held before the current one was promoted (to `fallback` when it
    held none, e.g. the version production serves); (from, to). `kind` is recorded with the move."""
    with open_registry(workspace) as registry:
        current = registry.alias_version(name, alias)
        if current is None:
            raise UserError(f"{name}@{alias} is not set; nothing to roll back")
        moves = registry.alias_moves(name, alias)
        promotions = [m for m in moves if m["kind"] == "promote" and m["to_version"] == current]
        previous = promotions[-1]["from_version"] if promotions else None
        previous = fallback if previous is None else previous
        if previous is None:
            raise UserError(f"{name}@{alias} is v{current}, its first version; there is no earlier one to roll back to")
        registry.move_alias(name, alias, previous, _user(), reason, kind)
    return current, previous
