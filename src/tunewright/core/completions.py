"""Completion records: finished work, keyed by what decides its result, so a rerun can skip it.

A key digests everything that decides a piece of work's result: the command and its options, the
bytes of its config file, the code version, and the keys or output digests of the work it consumed.
A record says that the work with that key finished as run R. It stays valid while R's recorded
inputs and outputs still hash as they did (a raw file edited, a split deleted or an adapter
overwritten makes it stale), so content decides, not timestamps or the config text alone.
Records are small JSON files under `pipeline/completed/`, written atomically, one per key: a record
is never reused for another key (datatrove's per-rank markers ignore the config, a known trap).
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from tunewright.core.io import sha256_file, write_json
from tunewright.core.manifest import MANIFEST, load_manifest

COMPLETED = Path("pipeline") / "completed"


def work_key(*parts: Any) -> str:
    """A sha256 over `parts` (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_version() -> str:
    """The installed tunewright version and, for a git checkout, the commit of its source."""
    from tunewright.core.runs import git_commit

    return f"{metadata.version('tunewright')}+{git_commit(Path(__file__).parent) or 'nogit'}"


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes, None when there is no such file."""
    return sha256_file(path) if path.is_file() else None


def outputs_digest(manifest: dict[str, Any]) -> str:
    """One digest of what a run wrote (its outputs' paths and sha256)."""
    outputs = sorted((o["path"], o.get("sha256") or o.get("link")) for o in manifest.get("outputs", []))
    return work_key(outputs)


def find(workspace: Path, key: str) -> dict[str, Any] | None:
    """The completion record for `key`, if there is one."""
    path = workspace / COMPLETED / f"{key}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def record(workspace: Path, key: str, entry: dict[str, Any]) -> None:
    """Write the completion record for `key` (atomically)."""
    write_json(workspace / COMPLETED / f"{key}.json", {"key": key, **entry})


def stale(workspace: Path, run_id: str) -> str | None:
    """Why run `run_id`'s result can no longer be reused (gone, an input or an output changed), or None."""
    manifest_path = workspace / "runs" / run_id / MANIFEST
    if not manifest_path.is_file():
        return f"run {run_id} is gone"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for kind, entries in (("input", manifest.get("inputs", [])), ("output", manifest.get("outputs", []))):
        for entry in entries:
            if "sha256" not in entry:
                continue  # a link: its target is an output of its own
            path = Path(entry["path"])
            if file_digest(path if path.is_absolute() else workspace / path) != entry["sha256"]:
                return f"{kind} {entry['path']} changed since run {run_id}"
    return None


def manifest_of(workspace: Path, run_id: str) -> dict[str, Any]:
    """Run `run_id`'s manifest."""
    return load_manifest(workspace / "runs" / run_id)
