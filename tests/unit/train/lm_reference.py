"""The textbook next-token loss, the oracle the fused and packed losses are checked against."""

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


def count_targets(batch: dict[str, torch.Tensor]) -> int:
    """Labelled next-token positions in a collated batch."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())
