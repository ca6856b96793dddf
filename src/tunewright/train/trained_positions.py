"""The last decoder layer's MLP, run only at the positions whose logits the loss uses.

`model_loss` asks the model for logits only where the next token is a target
(`logits_to_keep`). What the last decoder layer's MLP computes at any other position
reaches nothing: the final norm and the LM head work position by position, and no later
layer mixes positions. With a short answer after a long prompt that is most positions,
and the MLP is about two thirds of a layer's weights. Inside `last_mlp_where_trained`, while
`model_loss` runs a forward (`positions_in_use`), the last layer's MLP runs on those
positions only and returns zeros elsewhere: the same logits, loss and gradients, less work
forward and backward.

It is installed only where a probe forward shows the MLP maps hidden states to hidden
states of the same shape, and not with gradient checkpointing (whose recomputation runs
outside the loss). Outside `positions_in_use` (generation, other callers) the MLP is
unchanged, and the patch is removed when the block exits.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from tunewright.train.probe import probe_forward

_POSITIONS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("positions", default=None)


@contextlib.contextmanager
def positions_in_use(positions: torch.Tensor) -> Iterator[None]:
    """Declare, for forwards inside the block, the sequence positions whose logits are used."""
    token = _POSITIONS.set(positions)
    try:
        yield
    finally:
        _POSITIONS.reset(token)


def _last_mlp(model: nn.Module) -> nn.Module | None:
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    mlp = getattr(layers[-1], "mlp", None) if layers else None
    return mlp if isinstance(mlp, nn.Module) else None


def _maps_hidden_to_hidden(model: nn.Module, mlp: nn.Module) -> bool:
    """Whether, in a small eval-mode probe forward, the MLP returns a tensor shaped like its input."""
    seen: list[bool] = []

    def check(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        x = args[0] if args else None
        seen.append(isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor) and output.shape == x.shape)

    handle = mlp.register_forward_hook(check)
    try:
        probe_forward(model)
    finally:
        handle.remove()
    return seen == [True]


@contextlib.contextmanager
def last_mlp_where_trained(model: nn.Module) -> Iterator[bool]:
    """Run the last layer's MLP only at the positions in use; yields whether it was installed."""
    mlp = _last_mlp(model)
    checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if mlp is None or checkpointing or not _maps_hidden_to_hidden(model, mlp):
        yield False
        return
    own = type(mlp).forward

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        positions = _POSITIONS.get()
        if positions is None or x.dim() != 3:
            return own(mlp, x, *args, **kwargs)
        kept = own(mlp, x[:, positions], *args, **kwargs)  # under autocast: in the autocast dtype
        out = kept.new_zeros((*x.shape[:-1], kept.shape[-1]))
        out[:, positions] = kept
        return out

    mlp.forward = forward
    try:
        yield True
    finally:
        del mlp.forward
