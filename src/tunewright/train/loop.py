"""The training loop: AdamW-style optimiser, warmup + decay, accumulation, clipping, eval.

Each optimiser step consumes `gradient_accumulation_steps` micro-batches; the summed
token loss of every micro-batch is divided by the target-token count of the whole step,
so 1 x 8 and 8 x 1 give the same gradient. Data order is a seeded permutation per epoch.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tunewright.core.config import resolve_target
from tunewright.core.progress import progress_bar
from tunewright.train.config import TrainingConfig
from tunewright.train.data import Example, collate
from tunewright.train.losses import summed_lm_loss


def make_scheduler(
    optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine or linear decay to zero (or constant)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1.0 - progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(examples: list[Example], batch_size: int, seed: int) -> Iterator[list[Example]]:
    """Endless micro-batches: a new seeded permutation of the examples every epoch."""
    epoch = 0
    while True:
        order = list(range(len(examples)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for i in range(0, len(order), batch_size):
            yield [examples[j] for j in order[i : i + batch_size]]
        epoch += 1


@torch.no_grad()
def validation_loss(model: torch.nn.Module, examples: list[Example], batch_size: int, pad_id: int) -> float:
    """Mean loss per target token over `examples`."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i : i + batch_size], pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss, n = summed_lm_loss(logits, batch["labels"])
        total += loss.item()
        count += n
    model.train(was_training)
    return total / max(1, count)


def build_optimizer(model: torch.nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """The configured optimiser (`_target_`, allowlisted) over the trainable parameters."""
    cls = resolve_target(cfg.optimizer.target, cfg.optimizer.allow_any_target)
    params = [p for p in model.parameters() if p.requires_grad]
    return cls(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **cfg.optimizer.kwargs)


def train_loop(
    model: torch.nn.Module,
    train: list[Example],
    validation: list[Example],
    cfg: TrainingConfig,
    pad_id: int,
    log: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Run `cfg.max_steps` optimiser steps; `log` receives every metrics row."""
    torch.manual_seed(cfg.seed)
    optimizer = build_optimizer(model, cfg)
    warmup = int(cfg.warmup_ratio * cfg.max_steps)
    scheduler = make_scheduler(optimizer, cfg.scheduler, warmup, cfg.max_steps)
    batches = epoch_batches(train, cfg.micro_batch_size, cfg.seed)
    summary: dict[str, Any] = {}
    if validation:
        summary["initial_val_loss"] = validation_loss(model, validation, cfg.micro_batch_size, pad_id)
        log({"step": 0, "val_loss": summary["initial_val_loss"]})
    model.train()
    tokens_seen, t0 = 0, time.perf_counter()
    with progress_bar("training", total=cfg.max_steps) as advance:
        for step in range(1, cfg.max_steps + 1):
            micro = [collate(next(batches), pad_id) for _ in range(cfg.gradient_accumulation_steps)]
            targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)
            step_loss = 0.0
            for b in micro:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                loss, _ = summed_lm_loss(logits, b["labels"])
                (loss / max(1, targets)).backward()
                step_loss += loss.item()
                tokens_seen += int(b["attention_mask"].sum())
            grad_norm = None
            if cfg.max_grad_norm:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            row = {
                "step": step,
                "loss": step_loss / max(1, targets),
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": grad_norm,
                "tokens": tokens_seen,
                "tokens_per_s": tokens_seen / elapsed if elapsed > 0 else None,
            }
            log(row)
            summary["final_train_loss"] = row["loss"]
            if validation and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                val = validation_loss(model, validation, cfg.micro_batch_size, pad_id)
                log({"step": step, "val_loss": val})
                summary["final_val_loss"] = val
            advance(1, info=f"loss {row['loss']:.3f}")
    model.eval()
    summary.update(steps=cfg.max_steps, tokens=tokens_seen, seconds=round(time.perf_counter() - t0, 2))
    return summary
