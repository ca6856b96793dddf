"""Causal-LM loss summed over target tokens, so callers can normalise it themselves.

Gradient accumulation must divide by the number of target tokens in the whole accumulated
batch, not average per micro-batch (which over-weights short micro-batches); returning the
sum and the count lets the loop do exactly that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunewright.train.data import IGNORE


def summed_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross entropy over labelled positions, and how many there were."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, int((shift_labels != IGNORE).sum())
