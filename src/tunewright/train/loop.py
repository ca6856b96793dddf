"""The training loop: AdamW-style optimiser, warmup + decay, accumulation, clipping, eval,
checkpoints, resume, early stopping and SIGTERM / Ctrl-C handling, on one process or many.

SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) both let the current step finish,
save a checkpoint and stop with a message saying how to resume; a second Ctrl-C aborts at
once without saving.

Each optimiser step consumes `gradient_accumulation_steps` global micro-batches, and the
objective (`objectives/`) turns each into a loss normalised by counts over the whole step
(across ranks), so 1 x 8 and 8 x 1, or 1 process and N, give the same gradient. Data order
is a seeded permutation per epoch laid end to end, addressed by a cursor, so a resumed run
draws exactly the batches the interrupted one would have drawn. When the objective runs
padding-free rows, varlen attention (`varlen.py`) is on for the whole run.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from tunewright.core.config import instantiate, resolve_target
from tunewright.core.errors import UserError
from tunewright.core.progress import progress_bar
from tunewright.train.autocast import autocast_for
from tunewright.train.checkpoint import TrainerState, load_checkpoint, save_checkpoint
from tunewright.train.config import TrainConfig, TrainingConfig
from tunewright.train.distributed import Dist, all_sum, is_sharded, no_grad_sync, unwrap
from tunewright.train.fused_lora import fused_lora
from tunewright.train.objectives import Objective
from tunewright.train.rms_norm import fused_rms_norm
from tunewright.train.trained_positions import last_mlp_where_trained
from tunewright.train.varlen import varlen_attention


class Interrupted(UserError):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; exit code 128 + the signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


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


class Batches:
    """Global micro-batches of `size` units from seeded per-epoch permutations laid end to end."""

    def __init__(self, units: list[Any], size: int, seed: int) -> None:
        self.units, self.size, self.seed = units, size, seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.units)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._orders = {epoch: order}
        return self._orders[epoch]

    def get(self, cursor: int) -> list[Any]:
        """The `cursor`-th global micro-batch."""
        n = len(self.units)
        start = cursor * self.size
        return [self.units[self._order(k // n)[k % n]] for k in range(start, start + self.size)]


def build_optimizer(model: torch.nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    """The configured optimiser (`_target_`: an Optimizer subclass, allowlisted) over the trainable parameters."""
    key = "training.optimizer._target_"
    cls = resolve_target(cfg.optimizer.target, key, torch.optim.Optimizer, cfg.optimizer.allow_any_target)
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay, **cfg.optimizer.kwargs}
    return instantiate(cls, "training.optimizer", params, **kwargs)


@dataclass
class Trainer:
    """Runs `cfg.training.max_steps` optimiser steps; `log` receives every metrics row (rank 0)."""

    model: torch.nn.Module
    cfg: TrainConfig
    objective: Objective
    units: list
    validation: list
    d: Dist = field(default_factory=Dist)
    log: Callable[[dict[str, Any]], None] = lambda row: None
    checkpoint_root: Path | None = None
    state: TrainerState = field(default_factory=TrainerState)
    stop_requested: int = 0  # the signal number that asked the loop to stop, 0 while none did

    def __post_init__(self) -> None:
        t = self.cfg.training
        self.optimizer = build_optimizer(self.model, t)
        self.scheduler = make_scheduler(self.optimizer, t.scheduler, int(t.warmup_ratio * t.max_steps), t.max_steps)
        self.batches = Batches(self.units, t.micro_batch_size * self.d.world, t.seed)

    def resume(self, path: Path) -> None:
        self.state = load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.cfg.fingerprint(), self.d)

    def _emit(self, row: dict[str, Any]) -> None:
        self.state.metrics.append(row)
        if self.d.main:
            self.log(row)

    @contextlib.contextmanager
    def _speedups(self) -> Iterator[None]:
        """Exact-math speed-ups (fused LoRA groups, last MLP only where trained, CPU RMSNorm kernel)."""
        model = unwrap(self.model)
        with contextlib.ExitStack() as stack:
            if self.cfg.training.speedups and not is_sharded(model):
                stack.enter_context(fused_lora(model))
                stack.enter_context(last_mlp_where_trained(model))
                if self.d.device.type == "cpu":
                    stack.enter_context(fused_rms_norm(model))
            yield

    def _validation(self) -> dict[str, float]:
        """The objective's validation metrics (`val_loss` among them)."""
        return self.objective.validate(self.model, self.validation)

    def _clip_and_step(self) -> float | None:
        """Clip the gradient norm (returned), take the optimiser and scheduler step, clear the gradients."""
        t = self.cfg.training
        grad_norm = None
        if t.max_grad_norm:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            norm = torch.nn.utils.clip_grad_norm_(trainable, t.max_grad_norm)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _step(self) -> tuple[float, int, float | None, dict[str, float]]:
        """One optimiser step over `gradient_accumulation_steps` micro-batches, through the objective."""
        t, objective = self.cfg.training, self.objective
        micro = []
        for _ in range(t.gradient_accumulation_steps):
            micro.append(self.batches.get(self.state.cursor)[self.d.rank :: self.d.world])
            self.state.cursor += 1
        totals = all_sum(objective.counts(micro), self.d)
        stats: dict[str, float] = {}
        compute = autocast_for(self.d.device, self.cfg.compute_dtype())
        for i, units in enumerate(micro):
            with no_grad_sync(self.model, skip=i < len(micro) - 1), compute:
                loss, found = objective.forward(self.model, units, totals)
            loss.backward()
            for key, value in found.items():
                stats[key] = stats.get(key, 0.0) + value
        grad_norm = self._clip_and_step()
        keys = list(stats)
        *values, tokens = all_sum([stats[k] for k in keys] + [float(sum(objective.tokens(u) for u in micro))], self.d)
        loss_value, extra = objective.summarise(dict(zip(keys, values, strict=True)), totals)
        return loss_value, int(tokens), grad_norm, extra

    def _evaluate(self, step: int) -> bool:
        """Log validation loss; True when early stopping says stop."""
        t = self.cfg.training
        metrics = self._validation()
        val = metrics["val_loss"]
        self._emit({"step": step, **metrics})
        if self.state.best_val is None or val < self.state.best_val:
            self.state.best_val, self.state.bad_evals = val, 0
        else:
            self.state.bad_evals += 1
        return bool(t.early_stopping_patience and self.state.bad_evals >= t.early_stopping_patience)

    def _checkpoint(self) -> Path | None:
        if self.checkpoint_root is None:
            return None
        c = self.cfg.checkpoint
        return save_checkpoint(
            self.checkpoint_root,
            self.model,
            self.optimizer,
            self.scheduler,
            self.state,
            self.cfg.fingerprint(),
            self.d,
            c.keep_last,
        )

    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT ask the loop to checkpoint and stop after the current step."""

        def request(signum: int, frame: FrameType | None) -> None:
            if self.stop_requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested = signum
            if self.d.main:
                note = " (Ctrl-C again aborts without saving)" if signum == signal.SIGINT else ""
                os.write(2, f"\n{SIGNAL_NAMES[signum]}: saving a checkpoint after this step{note}\n".encode())

        try:
            previous = {s: signal.signal(s, request) for s in SIGNAL_NAMES}
        except ValueError:  # not the main thread: no handler, no graceful stop
            yield
            return
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def run(self) -> dict[str, Any]:
        t, c = self.cfg.training, self.cfg.checkpoint
        summary: dict[str, Any] = {}
        if self.validation and self.state.step == 0:
            self._emit({"step": 0, **self._validation()})
        first = next((r for r in self.state.metrics if r["step"] == 0 and "val_loss" in r), None)
        if first is not None:
            summary["initial_val_loss"] = first["val_loss"]
        self.model.train()
        t0, start_tokens, stopped_early = time.perf_counter(), self.state.tokens, False
        varlen = varlen_attention(unwrap(self.model)) if self.objective.padding_free else contextlib.nullcontext()
        bar = progress_bar("training", total=t.max_steps, enabled=self.d.main)
        with varlen, self._speedups(), self._stop_signals(), bar as advance:
            advance(self.state.step)
            while self.state.step < t.max_steps:
                loss, tokens, grad_norm, extra = self._step()
                self.state.step += 1
                self.state.tokens += tokens
                step = self.state.step
                elapsed = time.perf_counter() - t0
                rate = (self.state.tokens - start_tokens) / elapsed if elapsed > 0 else 0.0
                self._emit(
                    {
                        "step": step,
                        "loss": loss,
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm,
                        "tokens": self.state.tokens,
                        "tokens_per_s": rate,
                        **extra,
                    }
                )
                summary["final_train_loss"] = loss
                if self.validation and (step % t.eval_every == 0 or step == t.max_steps):
                    stopped_early = self._evaluate(step)
                    summary["final_val_loss"] = self.state.metrics[-1]["val_loss"]
                advance(1, info=f"loss {loss:.3f}, {rate:,.0f} tok/s")
                (stop,) = all_sum([float(self.stop_requested)], self.d)
                if stop:
                    signum = int(self.stop_requested or signal.SIGTERM)
                    where = self._checkpoint()
                    raise Interrupted(
                        f"stopped by {SIGNAL_NAMES.get(signum, 'a signal')} at step {step}"
                        + (f"; checkpoint {where}; continue with: tunewright train --resume {where}" if where else ""),
                        signum,
                    )
                if c.every and (step % c.every == 0 or step == t.max_steps or stopped_early):
                    self._checkpoint()
                if stopped_early:
                    break
        self.model.eval()
        summary.update(
            steps=self.state.step,
            stopped_early=stopped_early,
            best_val_loss=self.state.best_val,
            tokens=self.state.tokens,
            seconds=round(time.perf_counter() - t0, 2),
        )
        return summary
