"""Variable-length attention for padding-free and packed batches, on any device.

A padding-free batch is one row holding several examples back to back, with position ids
that restart at 0 for each. Flash attention's varlen kernels handle such rows natively on
GPUs; for SDPA and eager attention (CPUs, older GPUs) transformers would build a full
block-diagonal mask and pay attention over the whole row. This module registers an
attention function that splits the row at the position restarts and runs causal SDPA on
each example alone: exact (an example attends only to itself), and the attention cost is
the sum of the examples' own, with no padding anywhere.

It is also right for right-padded batches (a causal model never lets a real token attend
to the padding after it), so validation batches can go through it unchanged. It is only
switched on for the training loop (`varlen_attention`) and restored afterwards, so saved
models and inference keep the model's own attention.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

NAME = "tunewright_varlen"
NATIVE = ("flash_attention_2", "flash_attention_3")


def _segments(positions: torch.Tensor) -> list[int]:
    starts = (positions == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [*starts, positions.shape[0]]


def varlen_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention per example of each row; query (B, H, L, D) -> output (B, L, H, D)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    rows = []
    for b in range(query.shape[0]):
        bounds = _segments(position_ids[b if position_ids.shape[0] > 1 else 0]) if position_ids is not None else None
        bounds = bounds or [0, query.shape[2]]
        lengths = [e - s for s, e in itertools.pairwise(bounds) if e > s]
        row = (query, key, value) if query.shape[0] == 1 else (query[b : b + 1], key[b : b + 1], value[b : b + 1])
        # split, not slicing: its backward is one concatenation instead of a zero-filled
        # full-size gradient per example
        parts = [
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, dropout_p=dropout).transpose(1, 2)
            for q, k, v in zip(*(t.split(lengths, dim=2) for t in row), strict=True)
        ]
        rows.append(torch.cat(parts, dim=1))  # (1, L, H, D): the concatenation is the only copy
    return torch.cat(rows, dim=0) if len(rows) > 1 else rows[0], None


AttentionInterface.register(NAME, varlen_sdpa)


@contextlib.contextmanager
def varlen_attention(model: torch.nn.Module) -> Iterator[None]:
    """Use per-example attention inside the block (unless the model already has a varlen kernel)."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if config is None or current in NATIVE or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(current)
