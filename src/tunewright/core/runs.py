"""Run directories with `manifest.json`: what ran, on what, producing what, from which parents.

A run is built in a hidden staging directory, and so is every output it writes outside
it (`output_file` / `output_dir`): when the command succeeds, the manifest is written and
the outputs and then the run directory are renamed into place together (`OutputSet`), so
a failed or interrupted command changes nothing and never leaves a run that looks whole.

Lineage comes from what a run consumed, recorded when it reads it: each input is hashed
as it is added, and its producer is the newest completed run that wrote that same path
with that same content. Equal bytes at another path (a tokenizer copied beside an
adapter) or an older run that once wrote the same bytes are not parents.
"""

from __future__ import annotations

import os
import platform
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tunewright.core.config import dump_yaml
from tunewright.core.errors import UserError
from tunewright.core.io import OutputSet, sha256_file, write_json, write_text
from tunewright.core.manifest import MANIFEST, Manifest, list_manifests, load_manifest, newest, run_order
from tunewright.core.workspace import workspace_relative


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a run's behaviour."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("tunewright", "torch", "transformers", "peft", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit(where: Path) -> str | None:
    """The commit of the git repository holding `where`, if it is one."""
    try:
        res = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None


def host_facts() -> dict[str, Any]:
    """Where the run happened: host, platform, CPU count, accelerator, world size."""
    device = "cpu"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{torch.cuda.get_device_name(0)}"
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }


def new_run_id(stage: str) -> str:
    return f"{stage}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@dataclass
class Run:
    """A run being recorded; `dir` is its staging directory until the run completes."""

    workspace: Path
    run_id: str
    stage: str
    dir: Path
    command: list[str]
    config: dict[str, Any]
    seed: int | None
    outputs: OutputSet = field(default_factory=OutputSet)
    inputs: list[dict[str, str]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    manifest_copies: list[Path] = field(default_factory=list)
    _producers: dict[tuple[str, str], str] | None = None

    def add_input(self, path: Path) -> None:
        """Record a file (or every file under a directory) this run read, with the run that produced it."""
        if self._producers is None:
            self._producers = output_producers(self.workspace)
        for p in _files(path):
            entry = {"path": self.rel(p), "sha256": sha256_file(p)}
            producer = self._producers.get((entry["path"], entry["sha256"]))
            if producer is not None:
                entry["run"] = producer
                self.add_parent(producer)
            self.inputs.append(entry)

    def add_parent(self, run_id: str) -> None:
        """Record a run this one consumed the output of."""
        if run_id not in self.parents:
            self.parents.append(run_id)

    def output_file(self, path: Path) -> Path:
        """Where to write the new version of `path`; it takes its place when the run completes."""
        return self.outputs.file(path)

    def output_dir(self, path: Path) -> Path:
        """A directory to build the new version of `path` in; it takes its place when the run completes."""
        return self.outputs.dir(path)

    def new_output_dir(self, path: Path) -> Path:
        """A directory to build `path` in, which must not exist yet and is never replaced (a version)."""
        return self.outputs.new_dir(path)

    def output_link(self, path: Path, target: str) -> None:
        """Point the link `path` at `target` (relative to its directory) when the run completes."""
        self.outputs.link(path, target)

    def rel(self, path: Path) -> str:
        """A path relative to the workspace where possible (manifests survive moves)."""
        return workspace_relative(self.workspace, path)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


@contextmanager
def start_run(
    workspace: Path,
    stage: str,
    command: list[str],
    config: dict[str, Any],
    seed: int | None = None,
) -> Iterator[Run]:
    """Record a run: yields a `Run`; on success its outputs and `runs/<id>` appear together."""
    run_id = new_run_id(stage)
    started = _now()
    t0 = time.monotonic()
    outputs = OutputSet()
    final = workspace / "runs" / run_id
    run = Run(workspace, run_id, stage, outputs.dir(final), command, config, seed, outputs)
    try:
        yield run
        write_text(run.dir / "config.yaml", dump_yaml(config))
        manifest = _manifest(run, started, time.monotonic() - t0)
        for path in [run.dir / MANIFEST, *run.manifest_copies]:
            write_json(path, manifest)
        outputs.staged[final] = outputs.staged.pop(final)  # the run record goes into place last
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    _register(workspace, manifest)


def _register(workspace: Path, manifest: dict[str, Any]) -> None:
    """Index the completed run in the registry; if it cannot be written now, it catches up when next opened."""
    from tunewright.core.registry import REGISTRY, connect

    try:
        with connect(workspace / REGISTRY) as registry:
            registry.record(manifest)
    except (UserError, sqlite3.Error) as exc:
        print(f"warning: run {manifest['run_id']} is complete but not in the registry yet: {exc}", file=sys.stderr)


def _manifest(run: Run, started: str, seconds: float) -> dict[str, Any]:
    copies = {p.resolve() for p in run.manifest_copies}
    outputs = []
    for final, staged in run.outputs.staged.items():
        if final in run.outputs.links:
            outputs.append({"path": str(final.relative_to(run.workspace)), "link": os.readlink(staged)})
            continue
        for p in _files(staged):
            if p.resolve() in copies or (staged == run.dir and p.name == MANIFEST):
                continue
            where = final / p.relative_to(staged) if staged.is_dir() else final
            outputs.append({"path": run.rel(where), "sha256": sha256_file(p)})
    return {
        "run_id": run.run_id,
        "stage": run.stage,
        "status": "complete",
        "command": run.command,
        "config": run.config,
        "seed": run.seed,
        "versions": versions(),
        "git_commit": git_commit(run.workspace),
        "host": host_facts(),
        "started_at": started,
        "finished_at": _now(),
        "duration_s": round(seconds, 3),
        "parents": run.parents,
        "inputs": run.inputs,
        "outputs": outputs,
        "results": run.results,
    }


def output_producers(workspace: Path) -> dict[tuple[str, str], str]:
    """(path, sha256) -> the newest completed run that wrote that path with that content."""
    found: dict[tuple[str, str], str] = {}
    for manifest in sorted(list_manifests(workspace), key=run_order):
        for out in manifest.get("outputs", []):
            if "sha256" in out:  # links have none
                found[(out["path"], out["sha256"])] = manifest["run_id"]
    return found


def find_run(workspace: Path, ref: str) -> Path:
    """Resolve a run reference: a run id, a run's path, `latest[:stage]`, or an export version (`NAME@v2`,
    `NAME@production`, `exports/NAME[/v2]`), which stands for the export run that made it."""
    from tunewright.core.export_versions import named_version, resolve_version

    runs = workspace / "runs"
    if (runs / ref / MANIFEST).is_file():
        return runs / ref
    if ref == "latest" or ref.startswith("latest:"):
        stage = ref.partition(":")[2]
        done = newest([m for m in list_manifests(workspace) if not stage or m["stage"] == stage])
        if done is not None:
            return runs / done["run_id"]
    as_path = Path(ref)
    as_path = named_version(workspace, ref) or resolve_version(as_path if as_path.is_absolute() else workspace / ref)
    if (as_path / MANIFEST).is_file():
        made_by = runs / load_manifest(as_path)["run_id"]
        return made_by if (made_by / MANIFEST).is_file() else as_path
    raise UserError(f"no completed run {ref!r} in {runs}")


def lineage(workspace: Path, run_id: str) -> list[tuple[int, Manifest]]:
    """The run and its ancestors, depth-first, as (depth, manifest) pairs."""
    by_id = {m["run_id"]: m for m in list_manifests(workspace)}
    out: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()

    def walk(rid: str, depth: int) -> None:
        if rid in seen or rid not in by_id:
            return
        seen.add(rid)
        out.append((depth, by_id[rid]))
        for parent in by_id[rid]["parents"]:
            walk(parent, depth + 1)

    walk(run_id, 0)
    return out


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf values by key path; lists of named objects (tasks, gates, sources) are keyed by their name."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    named = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
    key = next((k for k in ("name", "metric") if named and all(k in v for v in value)), None)
    if key is not None:
        out = {}
        for item in value:
            out.update(_flatten(item, f"{prefix.rstrip('.')}[{item[key]}]."))
        return out
    return {prefix.rstrip("."): value}


def diff_manifests(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[tuple[str, Any, Any]]]:
    """Key paths whose value differs between two runs: in their configs, and in their results (metrics)."""
    out = {}
    for part in ("config", "results"):
        left, right = _flatten(a.get(part) or {}), _flatten(b.get(part) or {})
        keys = sorted(set(left) | set(right))
        out[part] = [(k, left.get(k), right.get(k)) for k in keys if left.get(k) != right.get(k)]
    return out
