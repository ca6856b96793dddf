"""`tunewright train` as a library call: the training run, recorded, on one process or under torchrun.

Rank 0 records the run and writes every output; the other ranks train their data shard under
the run id rank 0 broadcasts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunewright.core.allocator import keep_freed_memory
from tunewright.core.kernel_caches import bound_kernel_caches, step_capacity
from tunewright.core.runs import Run, new_run_id, start_run
from tunewright.train.checkpoint import find_checkpoint
from tunewright.train.config import TrainConfig
from tunewright.train.distributed import broadcast_object, init_distributed, shutdown
from tunewright.train.recipe import run_training


def train(
    workspace: Path, cfg: TrainConfig, command: list[str], resume: str | None = None
) -> tuple[Run | None, dict[str, Any]]:
    """Train as `cfg` says (continuing from checkpoint `resume`: a step directory, a run id or `latest`);
    the completed run (None on ranks other than 0) and the training summary."""
    checkpoint = find_checkpoint(workspace, resume) if resume else None
    sequences = cfg.training.micro_batch_size * (2 if cfg.objective == "dpo" else 1)  # a pair is two answers
    bound_kernel_caches(step_capacity(sequences))
    keep_freed_memory()  # every step allocates and frees the same activations (see core/allocator.py)
    d = init_distributed(cfg.distributed.backend)
    try:
        if not d.main:
            return None, run_training(cfg, workspace, None, broadcast_object(new_run_id("train"), d), d, checkpoint)
        with start_run(workspace, "train", command, cfg.model_dump(by_alias=True), seed=cfg.training.seed) as run:
            broadcast_object(run.run_id, d)
            summary = run_training(cfg, workspace, run, run.run_id, d, checkpoint)
        return run, summary
    finally:
        shutdown(d)
