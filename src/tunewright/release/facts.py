"""Everything the registry and the run records say about one export version, gathered once.

The model card and the release notes are rendered from these facts only, so neither can
say more than the runs recorded: the export run (format, parity, base and its hash), the
training run (method, hyper-parameters, losses), the curation runs along the lineage (data
sources, licenses, counts), the newest evaluation of that version (gates, intervals, items)
and the alias moves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.manifest import Manifest
from tunewright.core.registry import ANY, Registry
from tunewright.release.policy import lineage_licenses, load_policy


@dataclass
class VersionFacts:
    name: str
    version: int
    path: Path
    export: dict[str, Any]
    train: dict[str, Any] | None
    curates: list[dict[str, Any]]
    eval: dict[str, Any] | None  # the newest eval manifest of this version
    summary: dict[str, Any] | None  # its eval.json
    items: list[dict[str, Any]]  # its results.jsonl rows for the model
    licenses: list[tuple[str, str | None, str]]  # (what, license, policy class)
    aliases: list[str] = field(default_factory=list)
    moves: list[dict[str, Any]] = field(default_factory=list)  # alias moves that reached this version

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


def _newest_eval(
    registry: Registry, version_path: Path, source_run: str | None, baseline: object = ANY
) -> Manifest | None:
    """The newest eval of this version (the export itself or its training run); of one baseline if given."""
    found = registry.newest_eval(str(version_path), source_run, baseline)
    return found[1] if found else None


def _eval_files(workspace: Path, manifest: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[dict]]:
    if manifest is None:
        return None, []
    run_dir = workspace / "runs" / manifest["run_id"]
    summary = (
        json.loads((run_dir / "eval.json").read_text(encoding="utf-8")) if (run_dir / "eval.json").is_file() else None
    )
    items = []
    if (run_dir / "results.jsonl").is_file():
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("role") == "model":
                items.append(row)
    return summary, items


def version_facts(workspace: Path, registry: Registry, name: str, version: int) -> VersionFacts:
    """The facts of `name` v`version` from the registry and the runs it indexes."""
    rows = {v["version"]: v for v in registry.export_versions(name)}
    if version not in rows:
        have = ", ".join(f"v{v}" for v in rows) or "none"
        raise UserError(f"export {name!r} has no version v{version} in the registry (versions: {have})")
    row = rows[version]
    export = registry.run_manifest(row["export_run"])
    source = row["source_run"]
    train = registry.run_manifest(source) if source else None
    lineage = registry.ancestors(source) if source else []
    curates = [m for m in (registry.run_manifest(rid) for rid in lineage) if m and m["stage"] == "curate"]
    path = (workspace / "exports" / name / f"v{version}").resolve()
    newest = _newest_eval(registry, path, source)
    summary, items = _eval_files(workspace, newest)
    policy = load_policy(workspace)
    licenses = [
        (what, lic, policy.classify(lic))
        for what, lic in (lineage_licenses(workspace, source, lineage) if source else [])
    ]
    facts = VersionFacts(name, version, path, export or {}, train, curates, newest, summary, items, licenses)
    facts.aliases = [a for a in (row["aliases"] or "").split(", ") if a]
    for alias in facts.aliases:
        facts.moves += [m | {"alias": alias} for m in registry.alias_moves(name, alias) if m["to_version"] == version]
    return facts


def previous_production(registry: Registry, name: str, version: int) -> int | None:
    """The version production held before `version` was promoted to it; else the current production."""
    moves = registry.alias_moves(name, "production")
    into = [m for m in moves if m["kind"] == "promote" and m["to_version"] == version]
    if into:
        return into[-1]["from_version"]
    current = moves[-1]["to_version"] if moves else None
    return current if current != version else None


def eval_against(workspace: Path, registry: Registry, new: VersionFacts, old: VersionFacts) -> dict[str, Any] | None:
    """The newest eval of `new` whose baseline was exactly `old` (paired differences), with its eval.json."""
    manifest = _newest_eval(registry, new.path, new.export.get("results", {}).get("source_run"), str(old.path))
    return _eval_files(workspace, manifest)[0]
