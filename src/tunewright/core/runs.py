"""Run directories with `manifest.json`: what ran, on what, producing what, from which parents.

A run is built in a hidden staging directory and renamed into `runs/<run-id>` only when
the command succeeds, after its manifest is written, so an interrupted command never
leaves a run that looks whole. Lineage needs no bookkeeping by the stages: a run's
parents are the earlier runs whose recorded outputs have the same sha256 as this run's
inputs (the curation run that wrote a split, the training run that wrote an adapter).
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tunewright.core.config import dump_yaml
from tunewright.core.errors import UserError
from tunewright.core.io import atomic_dir, sha256_file, write_json, write_text

MANIFEST = "manifest.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


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
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def add_input(self, path: Path) -> None:
        """Record a file (or every file under a directory) this run read."""
        self.inputs.extend(_files(path))

    def add_output(self, path: Path) -> None:
        """Record a file outside the run directory that this run wrote."""
        self.outputs.extend(_files(path))

    @property
    def final_dir(self) -> Path:
        return self.workspace / "runs" / self.run_id

    def rel(self, path: Path) -> str:
        """A path relative to the workspace where possible (manifests survive moves)."""
        try:
            return str(path.resolve().relative_to(self.workspace.resolve()))
        except ValueError:
            return str(path.resolve())


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
    """Record a run: yields a `Run` whose staging dir becomes `runs/<id>` on success."""
    run_id = new_run_id(stage)
    started = _now()
    t0 = time.monotonic()
    with atomic_dir(workspace / "runs" / run_id) as staging:
        run = Run(workspace, run_id, stage, staging, command, config, seed)
        yield run
        write_text(staging / "config.yaml", dump_yaml(config))
        manifest = _manifest(run, started, time.monotonic() - t0)
        write_json(staging / MANIFEST, manifest)


def _manifest(run: Run, started: str, seconds: float) -> dict[str, Any]:
    inside = [p for p in _files(run.dir) if p.name != MANIFEST]
    outputs = [{"path": f"runs/{run.run_id}/{p.relative_to(run.dir)}", "sha256": sha256_file(p)} for p in inside]
    outputs += [{"path": run.rel(p), "sha256": sha256_file(p)} for p in run.outputs]
    inputs = [{"path": run.rel(p), "sha256": sha256_file(p)} for p in run.inputs]
    parents = list(dict.fromkeys(run.parents + producers(run.workspace, inputs)))
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
        "parents": parents,
        "inputs": inputs,
        "outputs": outputs,
        "results": run.results,
    }


def producers(workspace: Path, inputs: list[dict[str, str]]) -> list[str]:
    """Run ids whose recorded outputs include any of these input hashes (newest first)."""
    wanted = {i["sha256"] for i in inputs}
    found = []
    for manifest in sorted(list_manifests(workspace), key=_order, reverse=True):
        if wanted & {o["sha256"] for o in manifest.get("outputs", [])}:
            found.append(manifest["run_id"])
    return found


def _order(manifest: dict[str, Any]) -> tuple[str, str]:
    return manifest["started_at"], manifest["run_id"]


def list_manifests(workspace: Path) -> list[dict[str, Any]]:
    """Every completed run's manifest in the workspace."""
    out = []
    for path in sorted((workspace / "runs").glob(f"*/{MANIFEST}")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """Read a run's manifest; a directory without one is not a completed run."""
    path = run_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir} is not a completed run (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def find_run(workspace: Path, ref: str) -> Path:
    """Resolve a run reference: a path, a run id, or `latest[:stage]`."""
    as_path = Path(ref)
    if not as_path.is_absolute():
        as_path = workspace / ref
    if (as_path / MANIFEST).is_file():
        return as_path
    runs = workspace / "runs"
    if (runs / ref / MANIFEST).is_file():
        return runs / ref
    if ref == "latest" or ref.startswith("latest:"):
        stage = ref.partition(":")[2]
        done = [m for m in list_manifests(workspace) if not stage or m["stage"] == stage]
        if done:
            return runs / max(done, key=_order)["run_id"]
    raise UserError(f"no completed run {ref!r} in {runs}")


def lineage(workspace: Path, run_id: str) -> list[tuple[int, dict[str, Any]]]:
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
