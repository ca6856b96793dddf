"""Training objectives: what one recipe and one loop optimise, each behind the same small interface.

The recipe (`train/recipe.py`) asks the objective for its data (`load_split`, `units`) and
lets it prepare what it needs beside the model (`prepare`: DPO's reference), then the loop
(`train/loop.py`) drives every optimiser step through it: the counts that normalise the
loss across accumulation and processes (`counts`, summed over ranks by the loop), one
micro-batch's loss to back-propagate and its statistics (`forward`), the step's loss and
metrics from the statistics summed over ranks (`summarise`), and the validation metrics
(`validate`, with `val_loss`). This is the shape torchtune gives its recipes: the loop knows
nothing of any objective, and an objective (a reward model, GRPO) is one new module here
plus its entry in `registry.py`; no other objective's file changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.train.config import TrainConfig
from tunewright.train.data import Example
from tunewright.train.distributed import Dist
from tunewright.train.init_from import Start

U = TypeVar("U")  # the unit the objective trains on: an example, a packed row, a preference pair


@dataclass
class Split(Generic[U]):
    """One tokenised split: its file, its examples, and what was read, dropped and truncated."""

    path: Path
    examples: list[U] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"read": 0, "too_long": 0, "truncated": 0})


class Objective(ABC, Generic[U]):
    """What is optimised; constructed once per run with the run's config, tokenizer and processes."""

    name: ClassVar[str]

    def __init__(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase, d: Dist | None = None) -> None:
        self.cfg, self.tokenizer, self.d = cfg, tokenizer, d or Dist()

    @abstractmethod
    def load_split(self, path: Path) -> Split[U]:
        """Read and tokenise one split file; a bad line is a DataError naming file and line."""

    def units(self, split: Split[U]) -> list[U]:
        """What the loop draws micro-batches of (the split's examples unless the objective packs them)."""
        return split.examples

    @property
    def padding_free(self) -> bool:
        """Whether micro-batches run as padding-free rows (the loop turns varlen attention on)."""
        return False

    def prepare(self, workspace: Path, model: torch.nn.Module, start: Start, splits: list[Split[U]]) -> dict | None:
        """Set up what the objective needs beside the trained model; a record for the run's manifest, or None."""
        return None

    def attach(self, model: torch.nn.Module) -> None:
        """The model as the loop runs it (wrapped for DDP/FSDP), once it is."""

    def release(self) -> None:
        """Drop what `prepare` held before the model is saved."""

    @abstractmethod
    def tokens(self, units: list[U]) -> int:
        """Tokens in `units` (throughput)."""

    @abstractmethod
    def counts(self, micro: list[list[U]]) -> list[float]:
        """This process's normalising counts over a step's micro-batches (the loop sums them over ranks)."""

    @abstractmethod
    def forward(
        self, model: torch.nn.Module, units: list[U], totals: list[float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One micro-batch: the loss to back-propagate (normalised by the step's `totals`, scaled for the
        processes' gradient averaging), and statistics to sum over micro-batches and ranks."""

    @abstractmethod
    def summarise(self, stats: dict[str, float], totals: list[float]) -> tuple[float, dict[str, float]]:
        """The step's loss and extra metrics from its summed statistics."""

    @abstractmethod
    def validate(self, model: torch.nn.Module, examples: list[U]) -> dict[str, float]:
        """Validation metrics, `val_loss` among them (every rank evaluates all of them)."""

    def shown(self, unit: U) -> list[Example]:
        """The tokenised examples of a unit, for `train --check-data`."""
        return [unit] if isinstance(unit, Example) else []
