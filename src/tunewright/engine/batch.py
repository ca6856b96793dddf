"""One engine step's work as a flat batch of tokens, for the runners."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Segment:
    """Consecutive tokens of one request in the flat batch."""

    start: int  # first row in the flat batch
    length: int
    slot: int  # its KV-cache slot
    past: int  # tokens of this request already in the cache
    adapter: int  # 0: the base model


@dataclass
class StepBatch:
    """Single-token segments come first (rows 0..decodes-1), then the longer ones."""

    input_ids: torch.Tensor  # [N]
    positions: torch.Tensor  # [N]
    segments: list[Segment]
    logit_rows: torch.Tensor  # rows whose next-token logits the step needs

    @property
    def decodes(self) -> int:
        return sum(1 for s in self.segments if s.length == 1)

    def slots(self) -> torch.Tensor:
        """The cache slot of every row."""
        return torch.tensor([s.slot for s in self.segments for _ in range(s.length)], dtype=torch.long)

    def adapters(self) -> torch.Tensor:
        """The adapter of every row."""
        return torch.tensor([s.adapter for s in self.segments for _ in range(s.length)], dtype=torch.long)
