"""`model.init_from`: where a run starts, when it continues an earlier run of the same base.

SFT and DPO both use it: a DPO run usually starts from the SFT run's adapter, and an SFT run
can continue another. The earlier run must have trained the configured base (compared by
path), and an adapter is continued only by a run that trains an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.model_source import training_run
from tunewright.train.config import TrainConfig


@dataclass
class Start:
    """Where a run starts: the model to load, and the adapter of an earlier run to continue (if any)."""

    model_ref: str
    run_id: str | None = None
    adapter: Path | None = None


def start_of(workspace: Path, cfg: TrainConfig, model_ref: str) -> Start:
    """`model.init_from` resolved and checked against the configured base (same base, matching adapter kind)."""
    ref = cfg.model.init_from
    if ref is None:
        return Start(model_ref)
    source = training_run(workspace, ref)
    if source.run_id is None:
        raise UserError(f"model.init_from: {ref} is not a training run")
    base = source.tuned_from or source.base
    if Path(base).resolve() != Path(model_ref).resolve():
        raise UserError(
            f"model.init_from: run {source.run_id} was trained on {source.base_name or base}, not on "
            f"{cfg.model.name_or_path} (model.name_or_path); start from a run of this base, or change the base"
        )
    if source.adapter is None:  # a full fine-tune: its weights are the start (with a new adapter, if configured)
        return Start(source.base, source.run_id)
    if cfg.adapter == "none":
        raise UserError(
            f"model.init_from: run {source.run_id} trained an adapter; continue it with adapter: lora "
            "(or export it merged and start a full fine-tune from that directory)"
        )
    return Start(model_ref, source.run_id, source.adapter)
