"""Checkpoints that make a resumed run continue exactly where the interrupted one stopped.

A checkpoint is a directory `checkpoints/<run_id>/step-NNNNNN/` in the workspace (outside
the run's staging directory, which an interrupted run never promotes), written atomically:

- `model.safetensors`: the trainable weights (the adapter for LoRA/DoRA, everything for
  a full fine-tune), gathered to full tensors when the model is sharded;
- `optimizer.pt`: optimiser and LR-scheduler state;
- `rng.pt`: every rank's torch RNG state (dropout draws continue identically);
- `state.json`: step, data cursor (micro-batches drawn), tokens seen, early-stopping state,
  the config fingerprint a resume must match, and the metrics rows so far.

Only the last `keep_last` checkpoints of a run are kept.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunewright.core.errors import UserError
from tunewright.core.io import atomic_dir
from tunewright.train.distributed import Dist, full_state_dict, gather_objects, unwrap

PREFIX = "step-"


@dataclass
class TrainerState:
    step: int = 0
    cursor: int = 0
    tokens: int = 0
    best_val: float | None = None
    bad_evals: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {n for n, p in unwrap(model).named_parameters() if p.requires_grad}


def _model_state(model: torch.nn.Module, d: Dist) -> dict[str, torch.Tensor]:
    names = trainable_names(model)
    full = full_state_dict(model) if d.active else unwrap(model).state_dict()
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in full.items() if k in names}


def _optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, d: Dist) -> dict[str, Any]:
    if d.active:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer, options=opts)
    return optimizer.state_dict()


def save_checkpoint(
    root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainerState,
    fingerprint: dict[str, Any],
    d: Dist,
    keep_last: int,
) -> Path:
    """Write `root/step-NNNNNN` atomically (rank 0 writes; every rank takes part in gathering)."""
    weights = _model_state(model, d)
    optim = _optimizer_state(model, optimizer, d)
    rng = gather_objects(torch.get_rng_state(), d)
    path = root / f"{PREFIX}{state.step:06d}"
    if d.main:
        with atomic_dir(path) as tmp:
            save_file(weights, str(tmp / "model.safetensors"))
            torch.save({"optimizer": optim, "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
            torch.save(rng, tmp / "rng.pt")
            body = {**asdict(state), "fingerprint": fingerprint, "world_size": d.world}
            (tmp / "state.json").write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        for old in sorted(root.glob(f"{PREFIX}*"))[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(set(saved) | set(current))
        return [x for k in keys for x in _differences(saved.get(k), current.get(k), f"{prefix}{k}.")]
    return [] if saved == current else [f"{prefix[:-1]} ({saved!r} in the checkpoint, {current!r} now)"]


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    fingerprint: dict[str, Any],
    d: Dist,
) -> TrainerState:
    """Restore weights, optimiser, scheduler and RNG; refuses a checkpoint of another config."""
    body = json.loads((path / "state.json").read_text(encoding="utf-8"))
    diffs = _differences(body.pop("fingerprint"), json.loads(json.dumps(fingerprint)))
    if diffs:
        raise UserError(f"checkpoint {path} was made with another config: " + "; ".join(diffs))
    world = body.pop("world_size", 1)
    if world != d.world:
        raise UserError(f"checkpoint {path} was written by {world} process(es); resume with the same number")
    weights = load_file(str(path / "model.safetensors"))
    missing = trainable_names(model) - set(weights)
    if missing:
        raise UserError(f"checkpoint {path} lacks trainable weights: {', '.join(sorted(missing)[:5])}")
    saved = torch.load(path / "optimizer.pt", weights_only=True)
    if d.active:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, weights, options=opts)
        set_optimizer_state_dict(model, optimizer, saved["optimizer"], options=opts)
    else:
        unwrap(model).load_state_dict(weights, strict=False)
        optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng[d.rank])
    return TrainerState(**body)


def find_checkpoint(workspace: Path, ref: str) -> Path:
    """`latest`, a checkpoint directory, a run's checkpoint directory, or a training run id."""
    if ref == "latest":
        found = sorted((workspace / "checkpoints").glob(f"*/{PREFIX}*"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise UserError(f"no checkpoints under {workspace / 'checkpoints'}")
        return found[-1]
    for base in (Path(ref), workspace / ref, workspace / "checkpoints" / ref):
        if (base / "state.json").is_file():
            return base
        steps = sorted(base.glob(f"{PREFIX}*")) if base.is_dir() else []
        if steps:
            return steps[-1]
    raise UserError(f"no checkpoint found at {ref!r} (a step-* directory, a run id, or 'latest')")
