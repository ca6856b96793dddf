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

from tunewright.core.errors import UserError
from tunewright.core.export_versions import NAMED, VERSION, versions
from tunewright.core.registry import (
    alias_moves,
    alias_version,
    ancestors,
    export_versions,
    move_alias,
    open_registry,
)
from tunewright.core.runs import list_manifests
from tunewright.release.policy import lineage_licenses, load_policy


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


def _target(workspace: Path, ref: str) -> tuple[str, int | None]:
    named = NAMED.match(ref)
    name, selector = named.groups() if named else (ref, None)
    if not versions(workspace / "exports" / name):
        raise UserError(f"there is no export named {name!r} (exports/{name} has no versions)")
    if selector is None or selector == "latest":
        return name, None
    if not VERSION.match(selector):
        raise UserError(f"{ref}: promote takes NAME or NAME@v<N>, not an alias")
    return name, int(selector[1:])


def _evals_of(workspace: Path, row: dict[str, Any], version_path: Path) -> list[dict[str, Any]]:
    """Eval runs whose model was this version (the export, or the training run it came from), newest first."""
    found = []
    for m in list_manifests(workspace):
        r = m["results"]
        if m["stage"] != "eval" or "verdict" not in r:
            continue
        if r.get("model_path") == str(version_path) or (row["source_run"] and r.get("model_run") == row["source_run"]):
            found.append(m)
    return sorted(found, key=lambda m: (m["started_at"], m["run_id"]), reverse=True)


def decide(workspace: Path, ref: str, alias: str, license_reviewed: bool = False) -> Decision:
    """Whether `ref` may become `alias`, with every reason it may not."""
    name, wanted = _target(workspace, ref)
    conn = open_registry(workspace)
    rows = {v["version"]: v for v in export_versions(conn, name)}
    if not rows:
        raise UserError(f"export {name!r} has no version in the registry")
    version = wanted if wanted is not None else max(rows)
    if version not in rows:
        raise UserError(f"export {name!r} has no version v{version}; it has {', '.join(f'v{v}' for v in rows)}")
    row, current = rows[version], alias_version(conn, name, alias)
    decision = Decision(name, version, alias, current)
    if current == version:
        decision.reasons.append(f"{name}@{alias} is already v{version}")
        return decision
    if not row["parity_passed"]:
        decision.reasons.append(f"v{version} did not pass the export parity check")
    version_path = (workspace / "exports" / name / f"v{version}").resolve()
    against = "base" if current is None else str((workspace / "exports" / name / f"v{current}").resolve())
    label = "base" if current is None else f"v{current} (the current {alias})"
    evals = [m for m in _evals_of(workspace, row, version_path) if _baseline_of(m) == against]
    if not evals:
        baseline = "base" if current is None else f"{name}@{alias}"
        decision.reasons.append(
            f"v{version} has no evaluation against {label}: tunewright eval --model {name}@v{version} "
            f"--baseline {baseline}"
        )
    else:
        newest = evals[0]
        decision.eval_run = newest["run_id"]
        verdict = newest["results"]["verdict"]
        if verdict != "GO":
            failing = [f"{g['metric']} {g['status']}" for g in newest["results"]["gates"] if g["status"] != "PASS"]
            decision.reasons.append(
                f"the newest evaluation of v{version} against {label} ({newest['run_id']}) is {verdict}: "
                + ", ".join(failing)
            )
    _check_licenses(workspace, conn, row, decision, license_reviewed)
    return decision


def _check_licenses(
    workspace: Path, conn: Any, row: dict[str, Any], decision: Decision, license_reviewed: bool
) -> None:
    if not row["source_run"]:
        return
    policy = load_policy(workspace)
    for what, license_id in lineage_licenses(workspace, row["source_run"], ancestors(conn, row["source_run"])):
        verdict = policy.classify(license_id)
        decision.licenses.append((what, license_id, verdict))
        shown = license_id or "unknown"
        if verdict == "forbidden":
            decision.reasons.append(f"{what}: license {shown} is forbidden by the license policy (configs/policy.yaml)")
        elif verdict == "needs_review" and not license_reviewed:
            decision.reasons.append(
                f"{what}: license {shown} needs review under the license policy; pass --license-reviewed once done"
            )


def _baseline_of(manifest: dict[str, Any]) -> str | None:
    r = manifest["results"]
    return "base" if r.get("baseline") == "base" else r.get("baseline_path")


def promote(workspace: Path, decision: Decision, reason: str) -> None:
    """Move the alias (only call with a decision that has no reasons against it)."""
    reviewed = [f"{what}: {lic}" for what, lic, verdict in decision.licenses if verdict == "needs_review"]
    if reviewed:
        reason = f"{reason} [license review acknowledged: {'; '.join(reviewed)}]".strip()
    conn = open_registry(workspace)
    move_alias(conn, decision.name, decision.alias, decision.version, _user(), reason, "promote")


def rollback(workspace: Path, name: str, alias: str, reason: str) -> tuple[int, int]:
    """Return `name@alias` to the version it held before the current one was promoted; (from, to)."""
    conn = open_registry(workspace)
    current = alias_version(conn, name, alias)
    if current is None:
        raise UserError(f"{name}@{alias} is not set; nothing to roll back")
    promotions = [m for m in alias_moves(conn, name, alias) if m["kind"] == "promote" and m["to_version"] == current]
    previous = promotions[-1]["from_version"] if promotions else None
    if previous is None:
        raise UserError(f"{name}@{alias} is v{current}, its first version; there is no earlier one to roll back to")
    move_alias(conn, name, alias, previous, _user(), reason, "rollback")
    return current, previous
