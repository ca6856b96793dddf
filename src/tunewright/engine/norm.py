"""The model's RMSNorm for the runner, with the residual add before it fused into one pass in bf16.

A decoder layer adds each block's output to the residual stream and normalises the sum. In float32
that is `x.add_(delta)` and one `F.rms_norm` call. In bfloat16 PyTorch's CPU norm widens the rows to
float32 and back in several passes, and it skips a rounding that transformers' LlamaRMSNorm makes
(the normalised row is rounded to bf16 before the weight multiplies it), so its output differs from
the model's in about a quarter of the elements. Here bf16 rows go through one numba loop each: the
add, rounded to bf16 as PyTorch rounds it; the sum of squares and the scale in float32; the two
roundings transformers makes. It reproduces transformers' bf16 forward bit for bit on the rows
tested and takes about 0.6x the time of add + `F.rms_norm` on a decode step's 32 rows (2-core Xeon).
Other dtypes, layouts and norm formulas use PyTorch as before.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

_FASTMATH = {"reassoc", "contract"}  # vectorised sums; NaN and inf keep their meaning


@numba.njit(inline="always")
def _widen(bits: np.uint16) -> np.uint32:
    return np.uint32(bits) << np.uint32(16)


@numba.njit(inline="always")
def _round(bits: np.uint32) -> np.uint32:
    """float32 bits to bf16 bits, round to nearest even (NaN stays NaN), as PyTorch converts."""
    if (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint32(0x7FC0)
    return (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)


@numba.njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _bf16_add_rms_norm(x, delta, weight, eps, out, add):
    """Per row: x += delta (when `add`), out = weight * bf16(x * rsqrt(mean(x^2) + eps)); uint16 bit views."""
    n, d = x.shape
    row = np.empty(d, np.uint32)
    values = row.view(np.float32)
    other = np.empty(d, np.uint32)
    others = other.view(np.float32)
    wbits = np.empty(d, np.uint32)
    w = wbits.view(np.float32)
    for j in range(d):
        wbits[j] = _widen(weight[j])
    inv_d = np.float32(1.0 / d)
    for i in range(n):
        for j in range(d):
            row[j] = _widen(x[i, j])
        if add:
            for j in range(d):
                other[j] = _widen(delta[i, j])
            for j in range(d):
                values[j] += others[j]
            for j in range(d):
                bits = _round(row[j])
                x[i, j] = np.uint16(bits)
                row[j] = bits << np.uint32(16)
        s = np.float32(0.0)
        for j in range(d):
            s += values[j] * values[j]
        r = np.float32(1.0) / np.sqrt(s * inv_d + np.float32(eps))
        for j in range(d):
            values[j] *= r
        for j in range(d):
            row[j] = _round(row[j]) << np.uint32(16)
        for j in range(d):
            values[j] *= w[j]
        for j in range(d):
            out[i, j] = np.uint16(_round(row[j]))


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16)


class Norm:
    """The model's RMSNorm (same weight and epsilon): one fused `F.rms_norm` call, or the bf16 kernel above;
    norms of other kinds run as their module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
        weight = getattr(module, "weight", None)
        self.fused = type(module).__name__.endswith("RMSNorm") and eps is not None and weight is not None
        self.eps, self.weight = eps, weight
        on_cpu = weight is not None and weight.device.type == "cpu" and weight.dim() == 1
        self.kernel = self.fused and on_cpu and weight.dtype == torch.bfloat16

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The norm of `x`."""
        if self._on_kernel(x):
            out = torch.empty_like(x)
            _bf16_add_rms_norm(_bits(x), _bits(x), _bits(self.weight), self.eps, _bits(out), False)
            return out
        if self.fused:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return self.module(x)

    def add(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """`x += delta` (the residual stream, in place), then the norm of the sum."""
        if self._on_kernel(x) and delta.is_contiguous() and delta.dtype == x.dtype and delta.shape == x.shape:
            out = torch.empty_like(x)
            _bf16_add_rms_norm(_bits(x), _bits(delta), _bits(self.weight), self.eps, _bits(out), True)
            return out
        x.add_(delta)
        return self(x)

    def _on_kernel(self, x: torch.Tensor) -> bool:
        return self.kernel and x.dtype == torch.bfloat16 and x.dim() == 2 and x.is_contiguous() and not x.is_cuda
