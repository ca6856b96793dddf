"""One small forward for hooks to watch, so model-structure checks need no names or architectures."""

from __future__ import annotations

import torch
from torch import nn


def probe_forward(model: nn.Module, tokens: int = 8) -> None:
    """Run `tokens` token ids through the model in eval mode without gradients (no randomness
    is drawn); the training mode is restored afterwards."""
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(input_ids=torch.zeros((1, tokens), dtype=torch.long, device=device))
    finally:
        model.train(was_training)
