"""LoRA layers that read the same input, computed together while training.

peft runs each LoRA linear on its own: the base GEMM, x @ A^T, then @ B^T, then a scale
and an add as two more passes over the output. In a decoder layer q/k/v read one tensor
and gate/up read another, so during training we:

- find the groups by watching one small probe forward (which LoRA linears receive the very
  same input tensor), so no module names or architectures are hard-coded;
- compute the group's down-projections as one GEMM, x @ [A_q; A_k; A_v]^T, and add each
  member's up-projection into its base output in place, the scale folded into the GEMM;
- in the backward (a custom autograd function), accumulate the input gradient of every
  base and LoRA term in place, where autograd adds activation-sized tensors one by one.

The first member called computes the whole group and hands the others their outputs when
they are called with the same tensor; a call with any other input computes alone, so the
result is always each module's own function of its own input, as in peft (up to float
rounding). Only plain LoRA on frozen `nn.Linear` layers is touched (no dropout, DoRA,
merged or disabled adapters or sharded weights), and while the adapter is disabled, merged
or switched (a DPO reference pass) each layer runs peft's forward; the base GEMMs stay
separate, since fusing them measured no faster. Low precision is fused too: bf16 (or fp16)
base weights with peft's fp32 adapter weights, and bf16 autocast over fp32 weights (mixed
precision), compute in the low dtype as autocast would. Everything is restored when the
block exits, so saving and inference use peft's own forward.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunewright.train.probe import probe_forward


def _adapter(module: nn.Module) -> str | None:
    """The one active adapter of a plain LoRA linear, or None where fusing does not apply."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or module.merged or module.disable_adapters:
        return None
    active = [a for a in module.active_adapters if a in module.lora_A]
    if len(active) != 1 or active[0] in module.lora_variant or type(module.base_layer) is not nn.Linear:
        return None
    name = active[0]
    base, lora_a, lora_b = module.base_layer, module.lora_A[name], module.lora_B[name]
    frozen = [t for t in (base.weight, base.bias) if t is not None]
    weights = (*frozen, lora_a.weight, lora_b.weight)
    if any(t.requires_grad for t in frozen) or not isinstance(module.lora_dropout[name], nn.Identity):
        return None
    if lora_b.bias is not None or lora_a.bias is not None:
        return None
    if len({t.dtype for t in frozen}) != 1 or lora_a.weight.dtype != lora_b.weight.dtype:
        return None
    if any(type(w) not in (nn.Parameter, torch.Tensor) for w in weights):  # sharded (DTensor) weights
        return None
    return name


class _GroupLinear(torch.autograd.Function):
    """y_i = x W_i^T + b_i + s_i (x A_i^T) B_i^T for the members i of a group sharing x.

    Forward: one GEMM for all x A_i^T, then per member the base GEMM and the LoRA term added
    in place (`addmm_`). Backward: the input gradient accumulates every member's base and
    LoRA terms in place, where autograd would add whole activation-sized tensors.

    Every product runs in the compute dtype (autocast's while it is on, else the input's), as
    autocast would run peft's layers; gradients come back in each input's own dtype, so fp32
    adapter weights keep fp32 gradients. A frozen fp32 base weight under bf16 autocast is cast
    for its product and again in the backward, never saved in bf16 as autocast would save it.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, down: torch.Tensor, group: _Group, *ups: torch.Tensor) -> Any:
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(dtype)
            low_down, low_ups = down.to(dtype), [u.to(dtype) for u in ups]
            hidden = flat @ low_down.t()
            outs = []
            splits = hidden.split(group.ranks, dim=1)
            for base, h, up, scale in zip(group.bases, splits, low_ups, group.scales, strict=True):
                bias = None if base.bias is None else base.bias.to(dtype)
                y = F.linear(flat, base.weight.to(dtype), bias)
                y.addmm_(h, up.t(), alpha=scale)
                outs.append(y.view(*x.shape[:-1], -1))
        ctx.save_for_backward(flat, hidden, low_down, *low_ups)
        ctx.group, ctx.shape, ctx.dtypes = group, x.shape, (x.dtype, down.dtype, *(u.dtype for u in ups))
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> Any:
        flat, hidden, down, *ups = ctx.saved_tensors
        group, dtype = ctx.group, flat.dtype
        x_dtype, down_dtype, *up_dtypes = ctx.dtypes
        grads = tuple(None if g is None else g.reshape(-1, g.shape[-1]).to(dtype) for g in grads)
        d_hidden, d_ups = [], []
        splits = hidden.split(group.ranks, dim=1)
        for dy, h, up, scale, up_dtype in zip(grads, splits, ups, group.scales, up_dtypes, strict=True):
            if dy is None:
                d_hidden.append(torch.zeros_like(h))
                d_ups.append(None)
                continue
            d_hidden.append(torch.mm(dy, up).mul_(scale))
            d_ups.append(torch.mm(dy.t(), h).mul_(scale).to(up_dtype))
        dh = torch.cat(d_hidden, dim=1)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = torch.mm(dh, down)
            for dy, base in zip(grads, group.bases, strict=True):
                if dy is not None:
                    dx.addmm_(dy, base.weight.to(dtype))
            dx = dx.view(ctx.shape).to(x_dtype)
        return dx, torch.mm(dh.t(), flat).to(down_dtype), None, *d_ups


class _Group:
    """LoRA linears fed the same input: computed together by whichever is called first."""

    def __init__(self, members: list[tuple[nn.Module, str]]) -> None:
        self.members = members
        self.bases = [m.base_layer for m, _ in members]
        self.ranks = [m.lora_A[a].out_features for m, a in members]
        self.scales = [m.scaling[a] for m, a in members]
        self._input: torch.Tensor | None = None
        self._ready: dict[int, torch.Tensor] = {}

    def _as_fused(self) -> bool:
        """Whether every member still runs the adapter it was fused with: not disabled (a DPO reference
        pass under `disable_adapter()`), merged, or switched to another adapter since."""
        return all(not m.disable_adapters and not m.merged and m.active_adapters == [a] for m, a in self.members)

    def forward(self, index: int, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self._as_fused():  # peft's own forward
            module = self.members[index][0]
            return type(module).forward(module, x, *args, **kwargs)
        if self._input is x and index in self._ready:
            out = self._ready.pop(index)
            if not self._ready:
                self._input = None
            return out
        down = torch.cat([m.lora_A[a].weight for m, a in self.members])
        outs = _GroupLinear.apply(x, down, self, *(m.lora_B[a].weight for m, a in self.members))
        self._ready = {i: o for i, o in enumerate(outs) if i != index}
        self._input = x if self._ready else None
        return outs[index]


def find_groups(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """Plain LoRA linears grouped by shared input, seen in one eval-mode probe forward."""
    adapters = {m: a for m in model.modules() if (a := _adapter(m)) is not None}
    if not adapters:
        return []
    inputs: list[tuple[torch.Tensor, list[nn.Module]]] = []
    calls: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        calls[module] = calls.get(module, 0) + 1
        if not args or not isinstance(args[0], torch.Tensor):
            return
        for tensor, members in inputs:
            if tensor is args[0]:
                members.append(module)
                return
        inputs.append((args[0], [module]))

    handles = [m.register_forward_pre_hook(record) for m in adapters]
    try:
        probe_forward(model)
    finally:
        for h in handles:
            h.remove()
    groups = [[(m, adapters[m]) for m in members if calls[m] == 1] for _, members in inputs]
    return [g for g in groups if g]


@contextlib.contextmanager
def fused_lora(model: nn.Module) -> Iterator[int]:
    """Run the model's LoRA linears grouped inside the block; yields how many were fused."""
    groups = [_Group(members) for members in find_groups(model)]
    for group in groups:
        for i, (module, _) in enumerate(group.members):
            module.forward = functools.partial(group.forward, i)
    try:
        yield sum(len(g.members) for g in groups)
    finally:
        for group in groups:
            for module, _ in group.members:
                del module.forward
