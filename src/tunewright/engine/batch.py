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

    @property
    def device(self) -> torch.device:
        """Where the batch's tensors are (the model's device)."""
        return self.input_ids.device

    def slots(self) -> torch.Tensor:
        """The cache slot of every row."""
        return self._per_row([s.slot for s in self.segments])

    def adapters(self) -> torch.Tensor:
        """The adapter of every row."""
        return self._per_row([s.adapter for s in self.segments])

    def _per_row(self, values: list[int]) -> torch.Tensor:
        rows = [v for v, s in zip(values, self.segments, strict=True) for _ in range(s.length)]
        return torch.tensor(rows, dtype=torch.long, device=self.device)
