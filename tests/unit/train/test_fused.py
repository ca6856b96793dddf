"""Training speed-ups (fused LoRA groups, the RMSNorm kernel, the last MLP only where trained):
the same outputs and gradients as peft / transformers."""

import copy

import pytest
import torch
from lm_reference import summed_lm_loss
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.train.config import PeftConfig
from tunewright.train.data import IGNORE, Example, collate
from tunewright.train.fused_lora import find_groups, fused_lora
from tunewright.train.losses import model_loss
from tunewright.train.peft_adapter import apply_peft
from tunewright.train.rms_norm import RMSNormFunction, fused_rms_norm
from tunewright.train.trained_positions import last_mlp_where_trained


def lora_model(tiny_base, dropout=0.0, dora=False):
    tok = load_tokenizer(tiny_base)
    model = apply_peft(load_model(tiny_base, tokenizer=tok), PeftConfig(rank=4, alpha=8, dropout=dropout), dora=dora)
    torch.manual_seed(0)
    for name, p in model.named_parameters():  # non-zero B so every LoRA term counts
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)
    batch = collate_batch(tok)
    return model, batch


def collate_batch(tok):
    texts = ["Printer on floor 3 is jammed again.", "Reset my password please, it expired today."]
    examples = []
    for text in texts:
        ids = tok(text)["input_ids"]
        examples.append(Example(input_ids=ids, labels=ids, id=text))
    return collate(examples, tok.pad_token_id)


def loss_and_grads(model, batch):
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss, _ = summed_lm_loss(logits, batch["labels"])
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_groups_are_the_layers_that_share_an_input(tiny_base):
    model, _ = lora_model(tiny_base)
    groups = find_groups(model)
    names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    shapes = sorted({tuple(sorted(names[m] for m, _ in g)) for g in groups})
    assert shapes == [("down_proj",), ("gate_proj", "up_proj"), ("k_proj", "q_proj", "v_proj"), ("o_proj",)]
    layers = len(model.base_model.model.model.layers)
    assert len(groups) == 4 * layers


def test_fused_lora_gives_peft_loss_and_gradients(tiny_base):
    model, batch = lora_model(tiny_base)
    model.train()
    loss, grads = loss_and_grads(model, batch)
    with fused_lora(model) as fused:
        assert fused == 7 * len(model.base_model.model.model.layers)
        fused_loss, fused_grads = loss_and_grads(model, batch)
    torch.testing.assert_close(fused_loss, loss, rtol=1e-5, atol=1e-4)
    assert grads.keys() == fused_grads.keys() and any("lora_A" in n for n in grads)
    for name, grad in grads.items():  # float rounding only: summation order differs
        scale = float(grad.abs().max())
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_fused_lora_restores_peft_forward(tiny_base):
    model, batch = lora_model(tiny_base)
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    with fused_lora(model):
        assert all("forward" in vars(m) for m in lora_layers)
    assert not any("forward" in vars(m) for m in lora_layers)
    model.eval()
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"]).logits
        with fused_lora(model):
            b = model(input_ids=batch["input_ids"]).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dropout_dora_and_merged_adapters_are_left_to_peft(tiny_base):
    dropout, _ = lora_model(tiny_base, dropout=0.1)
    assert find_groups(dropout) == []
    dora, _ = lora_model(tiny_base, dora=True)
    assert find_groups(dora) == []
    merged, _ = lora_model(tiny_base)
    merged.merge_adapter()
    assert find_groups(merged) == []


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.float().flatten() for _, g in sorted(grads.items())])


@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
def test_fused_lora_under_bf16_is_as_close_to_fp32_as_peft_under_the_same_autocast(tiny_base, weights):
    """Mixed precision (fp32 weights) and bf16 base weights (peft keeps the adapter fp32), both under bf16
    autocast, against the same model computed in fp32. peft and the fused layers are two bf16 computations
    that sum in different orders, so each carries an error of the same order against fp32 and which one is
    smaller varies with the seed and the CPU's kernels: over 12 seeds on a Xeon with AMX the fused error
    ranged from 0.5x to 2x peft's over all gradients and up to 2.7x on a single small gradient tensor. A
    fault in the fused math (a missing term, a wrong scale, a gradient sent to the wrong member) is an
    error of order 1. So: the loss and all gradients together within 2x peft's error plus 1%, each tensor
    within 3x plus 3%, and the adapter's gradients stay fp32. The exact math is checked in fp32 above."""
    tok = load_tokenizer(tiny_base)
    model = apply_peft(load_model(tiny_base, weights, tok), PeftConfig(rank=4, alpha=8))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)
    batch = collate_batch(tok)
    model.train()
    exact = copy.deepcopy(model).float()
    want_loss, want = loss_and_grads(exact, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, grads = loss_and_grads(model, batch)
        with fused_lora(model) as fused:
            assert fused == 7 * len(model.base_model.model.model.layers)
            fused_loss, fused_grads = loss_and_grads(model, batch)
    peft_error = abs(float(loss) - float(want_loss))
    assert abs(float(fused_loss) - float(want_loss)) <= 2 * peft_error + 0.01 * abs(float(want_loss))
    assert grads.keys() == fused_grads.keys() == want.keys() and any("lora_A" in n for n in grads)
    assert all(g.dtype == torch.float32 for g in fused_grads.values())
    assert relative_error(flat(fused_grads), flat(want)) <= 2 * relative_error(flat(grads), flat(want)) + 0.01
    for name, grad in want.items():
        assert relative_error(fused_grads[name], grad) <= 3 * relative_error(grads[name], grad) + 0.03, name


def test_a_layer_called_with_another_input_computes_alone(tiny_base):
    model, _ = lora_model(tiny_base)
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    k = model.base_model.model.model.layers[0].self_attn.k_proj
    x, other = torch.randn(1, 5, q.in_features), torch.randn(1, 5, q.in_features)
    with torch.no_grad():
        want_q, want_k = q(x), k(other)
        with fused_lora(model):
            got_q, got_k = q(x), k(other)  # k's cached result was for x, not `other`
    torch.testing.assert_close(got_q, want_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_k, want_k, rtol=1e-5, atol=1e-5)


def test_rms_norm_kernel_matches_transformers_forward_and_backward():
    norm = LlamaRMSNorm(48, eps=1e-5)
    nn.init.normal_(norm.weight)
    x = torch.randn(3, 7, 48, requires_grad=True)
    grad = torch.randn(3, 7, 48)
    want = norm(x)
    want_grads = torch.autograd.grad(want, (x, norm.weight), grad)
    got = RMSNormFunction.apply(x, norm.weight, 1e-5)
    got_grads = torch.autograd.grad(got, (x, norm.weight), grad)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class OffsetRMSNorm(nn.Module):
    """Gemma's formula (1 + weight): another function, which the kernel must not replace."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1 + self.weight) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def test_only_norms_the_kernel_reproduces_are_patched():
    model = nn.Sequential(LlamaRMSNorm(16), OffsetRMSNorm(16))
    nn.init.normal_(model[1].weight)
    state = torch.random.get_rng_state()
    with fused_rms_norm(model) as patched:
        assert torch.equal(torch.random.get_rng_state(), state)  # checked with its own generator
        assert patched == 1
        assert "forward" in vars(model[0]) and "forward" not in vars(model[1])
        x = torch.randn(2, 16, dtype=torch.bfloat16)
        assert torch.equal(model[0](x), LlamaRMSNorm.forward(model[0], x))  # not float32: the module's own forward
    assert "forward" not in vars(model[0])


def test_last_mlp_where_trained_gives_the_same_loss_and_gradients(tiny_base):
    model, batch = lora_model(tiny_base)
    labels = batch["labels"].clone()
    labels[:, :6] = IGNORE  # a prompt: most positions are not trained
    batch = {**batch, "labels": labels}
    model.train()
    want_loss, _ = model_loss(model, batch)
    want_loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    mlp = model.base_model.model.model.layers[-1].mlp
    seen = []
    with last_mlp_where_trained(model) as installed:
        handle = mlp.gate_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
        got_loss, _ = model_loss(model, batch)
        handle.remove()
    got_loss.backward()
    assert installed and seen == [int((labels[:, 1:] != IGNORE).any(0).sum())]
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    for name, grad in want.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_last_mlp_is_whole_outside_the_loss_and_with_checkpointing(tiny_base):
    model, batch = lora_model(tiny_base)
    model.eval()
    with torch.no_grad():
        want = model(input_ids=batch["input_ids"]).logits
        with last_mlp_where_trained(model) as installed:
            got = model(input_ids=batch["input_ids"]).logits  # no positions declared: every position
    assert installed and torch.equal(got, want)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with last_mlp_where_trained(model) as installed:
        assert not installed


def test_a_disabled_adapter_is_the_base_model_with_the_speedups_on(tiny_base):
    """The DPO reference pass under `disable_adapter()` must be the base model, fused or not."""
    model, batch = lora_model(tiny_base)
    base = load_model(tiny_base, tokenizer=load_tokenizer(tiny_base)).eval()
    model.eval()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        expected = base(**inputs).logits
        adapted = model(**inputs).logits
        assert not torch.allclose(adapted, expected, atol=1e-4)  # the adapter does change the output
        with fused_lora(model) as fused, last_mlp_where_trained(model), fused_rms_norm(model):
            assert fused > 0
            with model.disable_adapter():
                reference = model(**inputs).logits
            torch.testing.assert_close(model(**inputs).logits, adapted, rtol=1e-5, atol=1e-5)  # on again
    torch.testing.assert_close(reference, expected, rtol=1e-5, atol=1e-5)
