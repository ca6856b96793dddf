"""Causal-LM loss summed over target tokens, so callers can normalise it themselves.

Gradient accumulation must divide by the number of target tokens in the whole accumulated
batch, not average per micro-batch (which over-weights short micro-batches); returning the
sum and the count lets the loop do exactly that.

`model_loss` runs the model and projects to the vocabulary only at positions whose next
token is a target (`logits_to_keep`): prompt tokens never pay for the LM head and the
cross entropy, which for a real vocabulary (128k entries) is a large part of a step; the
positions are also declared to the training loop's last-layer MLP (`trained_positions.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunewright.train.data import IGNORE
from tunewright.train.trained_positions import positions_in_use


def model_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Forward `batch` (input_ids, labels, attention_mask or position_ids); the summed loss and target count."""
    labels = batch["labels"]
    next_labels = labels[:, 1:]
    keep = (next_labels != IGNORE).any(0).nonzero().squeeze(1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with positions_in_use(keep):
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    targets = next_labels[:, keep]
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())
