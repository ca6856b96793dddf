"""A KV cache of fixed slots: one per running request, allocated up front, no copies as it grows.

Each layer has a key and a value tensor `[slots, kv_heads, max_len, head_dim]` (head-major,
so attention reads each head's positions as one contiguous run); a request owns one slot
from admission to its end and writes the keys and values of position p at `[slot, :, p]`.
Memory is `2 * layers * slots * max_len * kv_heads * head_dim * dtype size`, fixed at start,
so the server never runs out of cache mid-request and never reallocates.
"""

from __future__ import annotations

import torch


class Slots:
    """Which of `count` request slots are free; the lowest free one is handed out first."""

    def __init__(self, count: int, max_len: int) -> None:
        self.count, self.max_len = count, max_len
        self.free: list[int] = list(range(count))

    def allocate(self) -> int | None:
        """The lowest free slot (keeps the used ones packed), or None when all are taken."""
        if not self.free:
            return None
        self.free.sort()
        return self.free.pop(0)

    def release(self, slot: int) -> None:
        self.free.append(slot)


class SlotKVCache(Slots):
    def __init__(
        self,
        layers: int,
        slots: int,
        max_len: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        super().__init__(slots, max_len)
        shape = (slots, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
