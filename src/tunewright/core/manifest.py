"""Run manifests on disk, and typed views of what the stages record in them.

`runs/<id>/manifest.json` is the source of truth (`runs.py` writes it, `registry.py`
indexes it). Readers that decide something from a manifest (which eval is newest, did its
gates pass, what did an export check) use the views here rather than string keys, so a
renamed result is a type error in one place rather than a silent `None` in many. The views
read old manifests too: a missing key is `None`, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError

MANIFEST = "manifest.json"
Manifest = dict[str, Any]


def run_order(manifest: Manifest) -> tuple[str, str]:
    """The sort key of runs: when they started, then their id (ids are unique where clocks tie)."""
    return manifest["started_at"], manifest["run_id"]


def newest(manifests: list[Manifest]) -> Manifest | None:
    """The most recently started of `manifests` (None when there are none)."""
    return max(manifests, key=run_order) if manifests else None


def list_manifests(workspace: Path) -> list[Manifest]:
    """Every completed run's manifest in the workspace."""
    out = []
    for path in sorted((workspace / "runs").glob(f"*/{MANIFEST}")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def load_manifest(run_dir: Path) -> Manifest:
    """Read a run's manifest; a directory without one is not a completed run."""
    path = run_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{run_dir} is not a completed run (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))


def failed_gates(gates: list[dict[str, Any]]) -> list[str]:
    """The gates (as an eval records them) that did not pass, each as `metric (STATUS)`: the one way every
    verb names them."""
    return [f"{g['metric']} ({g['status']})" for g in gates if g["status"] != "PASS"]


def failing_gates(gates: list[dict[str, Any]]) -> str:
    """`failed_gates` as one phrase: `metric (STATUS), ...`."""
    return ", ".join(failed_gates(gates))


@dataclass(frozen=True)
class Gate:
    """One gate's outcome as an eval run recorded it."""

    metric: str
    status: str  # PASS | FAIL | INCONCLUSIVE | ...

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


@dataclass(frozen=True)
class EvalResult:
    """What an eval run decided: the model and baseline it compared, its gates and its verdict."""

    run_id: str
    verdict: str
    gates: tuple[Gate, ...]
    model: str | None
    model_run: str | None
    model_path: str | None
    baseline: str | None
    baseline_path: str | None

    @classmethod
    def of(cls, manifest: Manifest) -> EvalResult | None:
        """The eval result of an eval run's manifest (None: not an eval run, or one without a verdict)."""
        r = manifest.get("results") or {}
        if manifest.get("stage") != "eval" or "verdict" not in r:
            return None
        gates = tuple(Gate(g["metric"], g["status"]) for g in r.get("gates") or [])
        return cls(
            manifest["run_id"],
            r["verdict"],
            gates,
            r.get("model"),
            r.get("model_run"),
            r.get("model_path"),
            r.get("baseline"),
            r.get("baseline_path"),
        )

    @property
    def passed(self) -> bool:
        return self.verdict == "GO"

    @property
    def against(self) -> str | None:
        """What the model was compared with: `base`, or the baseline's files' path."""
        return "base" if self.baseline == "base" else self.baseline_path

    def evaluated(self, model_path: str | None = None, model_run: str | None = None) -> bool:
        """Whether this eval's model was the one at `model_path` or trained by `model_run`."""
        return (model_path is not None and self.model_path == model_path) or (
            model_run is not None and self.model_run == model_run
        )

    def _gate_records(self) -> list[dict[str, Any]]:
        return [{"metric": g.metric, "status": g.status} for g in self.gates]

    def failing(self) -> str:
        """The gates that did not pass, as `metric (STATUS), ...`."""
        return failing_gates(self._gate_records())

    def as_record(self) -> dict[str, Any]:
        """The short form other manifests keep of it (an export names the eval it was allowed by)."""
        failed = failed_gates(self._gate_records())
        return {"run_id": self.run_id, "verdict": self.verdict, "passed": self.passed, "failed_gates": failed}


@dataclass(frozen=True)
class ExportResult:
    """What an export run made and checked."""

    run_id: str
    name: str
    version: str
    format: str | None
    source_run: str | None
    export_dir: str | None
    parity_passed: bool
    gguf_type: str | None
    top1_agreement: float | None

    @classmethod
    def of(cls, manifest: Manifest) -> ExportResult | None:
        """The export result of an export run's manifest (None: not one, or one made before versions)."""
        r = manifest.get("results") or {}
        if manifest.get("stage") != "export" or not r.get("version"):
            return None
        return cls(
            manifest["run_id"],
            r["name"],
            r["version"],
            r.get("format"),
            r.get("source_run"),
            r.get("export_dir"),
            bool(r.get("parity_passed")),
            r.get("gguf_type"),
            r.get("top1_agreement"),
        )

    @property
    def version_number(self) -> int:
        return int(self.version.removeprefix("v"))


@dataclass(frozen=True)
class TrainMethod:
    """How a training run trained: the objective, the adapter (`none` for a full fine-tune), the task."""

    objective: str
    adapter: str
    task: str

    @classmethod
    def of(cls, manifest: Manifest) -> TrainMethod:
        """Read from the run's config; runs recorded before `adapter` and `objective` existed kept `method`."""
        cfg = manifest.get("config") or {}
        method = cfg.get("method")
        adapter = cfg.get("adapter") or ("none" if method in (None, "sft") else method)
        objective = cfg.get("objective") or "sft"
        return cls(objective, adapter, cfg.get("task") or "chat")

    def describe(self) -> str:
        return f"{self.objective.upper()}, {'full fine-tune' if self.adapter == 'none' else self.adapter}"


@dataclass(frozen=True)
class CurateResult:
    """What a curation run kept and dropped; conversation and preference-pair sources together."""

    run_id: str
    lines_read: int | None
    kept: int | None
    quarantined: int | None
    kept_by_source: dict[str, int]
    quarantine_by_step: dict[str, int]
    pii_counts: dict[str, int]
    splits: dict[str, int]

    @classmethod
    def of(cls, manifest: Manifest) -> CurateResult:
        """Read a curate run's results; a preference source's counts live under `preference_pairs`."""
        r = manifest.get("results") or {}
        parts = [r, r.get("preference_pairs") or {}]

        def total(key: str) -> int | None:
            found = [p[key] for p in parts if p.get(key) is not None]
            return sum(found) if found else None

        def merged(key: str) -> dict[str, int]:
            out: dict[str, int] = {}
            for part in parts:
                for name, count in (part.get(key) or {}).items():
                    out[name] = out.get(name, 0) + count
            return out

        return cls(
            manifest["run_id"],
            total("lines_read"),
            total("kept"),
            total("quarantined"),
            merged("kept_by_source"),
            merged("quarantine_by_step"),
            merged("pii_counts"),
            merged("splits"),
        )
