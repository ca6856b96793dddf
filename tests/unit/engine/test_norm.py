"""The runner's norm: transformers' LlamaRMSNorm in bf16, with the residual add before it, from one kernel."""

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from tunewright.engine.norm import Norm


def llama_norm(width: int, dtype: torch.dtype) -> LlamaRMSNorm:
    torch.manual_seed(0)
    norm = LlamaRMSNorm(width, eps=1e-5)
    norm.weight.data = (torch.rand(width) + 0.5).to(dtype)
    return norm


def ulps(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Distance in bf16 units in the last place (same-sign values)."""
    return (got.view(torch.int16).int() - want.view(torch.int16).int()).abs()


@pytest.mark.parametrize("rows", [1, 32, 300])
def test_bf16_add_and_norm_are_transformers_up_to_the_sum_order(rows):
    """The add is exact (each sum rounded once, as PyTorch rounds it); the norm sums squares in another order
    than PyTorch's mean, so an output may land one bf16 step away, rarely."""
    module = llama_norm(576, torch.bfloat16)
    norm = Norm(module)
    assert norm.kernel
    x = (torch.randn(rows, 576) * torch.logspace(-2, 2, rows)[:, None]).bfloat16()
    delta = torch.randn(rows, 576).bfloat16()
    want_x = x + delta
    with torch.no_grad():
        want = module(want_x)
    got_x = x.clone()
    got = norm.add(got_x, delta)
    assert torch.equal(got_x, want_x)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert int(ulps(got, want).max()) <= 1 and float((got != want).float().mean()) <= 0.001
    assert torch.equal(norm(want_x), got)  # without the add: the same kernel on the sum


def test_nan_and_inf_keep_their_meaning():
    norm = Norm(llama_norm(64, torch.bfloat16))
    x = torch.randn(3, 64).bfloat16()
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    out = norm(x)
    assert not out[0].isnan().any() and out[1].isnan().all() and out[2].isnan().any()


def test_other_dtypes_and_layouts_use_pytorch():
    fp32 = Norm(llama_norm(64, torch.float32))
    assert not fp32.kernel
    x, delta = torch.randn(4, 64), torch.randn(4, 64)
    with torch.no_grad():
        want = fp32.module(x + delta)
    torch.testing.assert_close(fp32.add(x, delta), want)
    bf16 = Norm(llama_norm(64, torch.bfloat16))
    strided = torch.randn(64, 4).bfloat16().t()  # not contiguous: PyTorch's norm
    with torch.no_grad():
        torch.testing.assert_close(bf16(strided).float(), bf16.module(strided).float(), atol=0.02, rtol=0.02)
