"""Model references: what `--model`, `--baseline`, `export RUN` and `serve MODEL` may name.

A reference is `base` (the base model of another reference), a training run (id, path or
`latest:train`), a model directory (a merged export, any HF model; `exports/<name>` is its
latest version), an adapter export
(its base is recorded by name and content hash and resolved here, at load time), or a
hub id. A reference to the wrong kind of run, or to a run without the expected output,
is a `UserError` that says what was expected.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core.errors import UserError
from tunewright.core.export_versions import named_version, resolve_version
from tunewright.core.io import sha256_tree
from tunewright.core.manifest import MANIFEST, load_manifest
from tunewright.core.model_location import locate_model
from tunewright.core.modeling import load_adapter_model, load_model, load_tokenizer
from tunewright.core.precision import resolve_device, resolve_dtype
from tunewright.core.progress import status
from tunewright.core.runs import find_run


@dataclass
class ModelSource:
    """Where a model to run comes from: a base (path or hub id), optionally with an adapter."""

    label: str
    base: str
    adapter: Path | None = None
    run_id: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    tuned_from: str | None = None  # a fully fine-tuned model's base (what `base` means for it)
    base_name: str | None = None  # the base as the training config named it (portable, unlike `base`)

    def in_dtype(self, requested: str, device: str = "auto", device_key: str = "device") -> ModelSource:
        """This model run in `requested` (auto | float32 | bfloat16 | float16) on `device` (auto | cpu | cuda |
        cuda:N, the setting `device_key`), both resolved for this machine, as `serve` and `eval` both run it,
        so what is evaluated is what is served."""
        where = resolve_device(device, device_key)
        return dataclasses.replace(self, dtype=resolve_dtype(requested, self.base, where), device=where)

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Load the model ready for inference."""
        with status(f"loading {self.label}"):
            if self.adapter is not None:
                model, tokenizer = load_adapter_model(self.base, self.adapter, self.dtype)
                return model.to(self.device), tokenizer
            tokenizer = load_tokenizer(self.base)
            return load_model(self.base, self.dtype, tokenizer).to(self.device).eval(), tokenizer

    def load_base(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """The base model without its adapter (the engine applies adapters itself) and the tokenizer to use."""
        with status(f"loading {self.label}"):
            tokenizer = load_tokenizer(self.adapter if self.adapter is not None else self.base)
            return load_model(self.base, self.dtype, tokenizer).to(self.device).eval(), tokenizer

    def files(self) -> list[Path]:
        """Local files this model is made of (manifest inputs)."""
        paths = [Path(self.base)] if Path(self.base).exists() else []
        return paths + ([self.adapter] if self.adapter is not None else [])


def base_record(workspace: Path, name: str) -> dict[str, Any]:
    """How an export names its base portably: as configured, plus a content hash when it is local."""
    where = Path(locate_model(workspace, name, "base model"))
    return {"name_or_path": name, "sha256": sha256_tree(where) if where.is_dir() else None}


def _adapter_export(workspace: Path, ref: str, path: Path) -> ModelSource:
    """An exported adapter: find its recorded base where this workspace keeps it, and check it is the same."""
    manifest = path / MANIFEST
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("results", {}) if manifest.is_file() else {}
    base = recorded.get("base_model")
    if base is None:
        cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        base = {"name_or_path": cfg.get("base_model_name_or_path"), "sha256": None}
    if not base["name_or_path"]:
        raise UserError(f"{ref}: the adapter names no base model (adapter_config.json base_model_name_or_path)")
    where = locate_model(workspace, base["name_or_path"], f"the base model of adapter {ref}")
    if base.get("sha256") and Path(where).is_dir() and sha256_tree(Path(where)) != base["sha256"]:
        raise UserError(
            f"{ref} was trained on a base {base['name_or_path']!r} whose files differ from {where} "
            f"(recorded content hash {base['sha256'][:12]}…); put the original base there"
        )
    return ModelSource(ref, where, path, recorded.get("source_run"), recorded.get("dtype", "float32"))


def _merged_base(workspace: Path, model_dir: Path) -> str | None:
    """The base a merged export was made from (what `base` means for it), where this workspace keeps it."""
    manifest = model_dir / MANIFEST
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("results", {}) if manifest.is_file() else {}
    base = (recorded.get("base_model") or {}).get("name_or_path")
    if recorded.get("format") != "merged" or not base:
        return None
    try:
        return locate_model(workspace, base, f"the base model of {model_dir.name}")
    except UserError:  # a merged export stands alone; only `--baseline base` needs its base
        return None


def resolve_model(workspace: Path, ref: str, base_of: ModelSource | None = None) -> ModelSource:
    """Turn a model reference into a `ModelSource` (see the module docstring for the kinds)."""
    if ref == "base":
        if base_of is None:
            raise UserError("'base' names the base model of another model; use it with --baseline")
        return ModelSource("base", base_of.tuned_from or base_of.base, dtype=base_of.dtype, device=base_of.device)
    named = named_version(workspace, ref)
    if named is not None:
        ref = f"exports/{named.parent.name}/{named.name}"
    local = Path(ref) if Path(ref).is_absolute() else workspace / ref
    versioned = resolve_version(local)
    if versioned != local:  # exports/<name>: its latest version
        local, ref = versioned, f"{ref.rstrip('/')}/{versioned.name}"
    if (local / "config.json").is_file():
        return ModelSource(ref, str(local), tuned_from=_merged_base(workspace, local))
    if (local / "adapter_config.json").is_file():
        if (local.parent / MANIFEST).is_file() and local.name == "adapter":
            return training_run(workspace, str(local.parent))
        return _adapter_export(workspace, ref, local)
    gguf = sorted(local.glob("*.gguf")) if local.is_dir() else []
    if gguf:
        raise UserError(
            f"{ref} is a GGUF export ({gguf[0].name}): run it with llama.cpp (`llama-server -m {gguf[0]}`); "
            "tunewright serves and evaluates merged and adapter exports"
        )
    try:
        return training_run(workspace, ref)
    except LookupError:
        return ModelSource(ref, locate_model(workspace, ref, "model"))


def training_run(workspace: Path, ref: str) -> ModelSource:
    """The model a training run produced; `LookupError` when `ref` names no run at all."""
    try:
        run_dir = find_run(workspace, ref)
    except UserError as exc:
        if ref.startswith(("latest", "runs/", "train-")) or (workspace / "runs" / ref).exists():
            raise
        raise LookupError(ref) from exc
    manifest = load_manifest(run_dir)
    rid, stage = manifest["run_id"], manifest["stage"]
    if stage != "train":
        raise UserError(
            f"{ref} is run {rid} of stage '{stage}'; expected a training run (a train-… id or latest:train)"
        )
    full = (run_dir / "model" / "config.json").is_file()
    if not full and not (run_dir / "adapter" / "adapter_config.json").is_file():
        raise UserError(f"training run {rid} has neither adapter/ nor model/ in {run_dir}; it cannot be loaded")
    model_cfg = manifest["config"]["model"]
    name, dtype = model_cfg["name_or_path"], model_cfg["dtype"]
    base_ref = locate_model(workspace, name, f"the base model of run {rid}")
    if full:
        return ModelSource(rid, str(run_dir / "model"), None, rid, dtype, tuned_from=base_ref, base_name=name)
    return ModelSource(rid, base_ref, run_dir / "adapter", rid, dtype, base_name=name)
