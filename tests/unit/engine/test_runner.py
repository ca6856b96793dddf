"""The runners against the transformers forward: same logits for prefill chunks, decode rows and adapters."""

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tunewright.engine.batch import Segment, StepBatch
from tunewright.engine.hf import HFRunner
from tunewright.engine.llama import LlamaRunner


def reference(path, adapter=None):
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return PeftModel.from_pretrained(model, str(adapter)).eval() if adapter else model


def run_steps(runner, seqs, plan, adapters=None):
    """Feed `plan` (steps of (seq, start, end, slot)) to the runner; returns each seq's logits per position."""
    got = {i: [] for i in range(len(seqs))}
    for parts in plan:
        parts = sorted(parts, key=lambda p: (p[2] - p[1] != 1, p[3]))
        ids, pos, segs = [], [], []
        for si, a, b, slot in parts:
            segs.append(Segment(len(ids), b - a, slot, a, (adapters or {}).get(si, 0)))
            ids += seqs[si][a:b]
            pos += range(a, b)
        out = runner.forward(StepBatch(torch.tensor(ids), torch.tensor(pos), segs, torch.arange(len(ids))))
        at = 0
        for si, a, b, _ in parts:
            got[si].append(out[at : at + b - a])
            at += b - a
    return {i: torch.cat(v) for i, v in got.items()}


# chunked prefill of three prompts across steps, then decode rows in slots 0 and 2 (not contiguous)
PLAN = [
    [(0, 0, 30, 0), (1, 0, 10, 1)],
    [(1, 10, 17, 1), (2, 0, 20, 2)],
    [(2, 20, 44, 2), (0, 30, 31, 0)],
    [(0, 31, 32, 0), (2, 44, 45, 2)],
]


@pytest.fixture(scope="module")
def seqs(tiny_base):
    torch.manual_seed(0)
    vocab = AutoModelForCausalLM.from_pretrained(tiny_base).config.vocab_size
    return [torch.randint(0, vocab, (n,)).tolist() for n in (32, 17, 45)]


@pytest.mark.parametrize("runner_cls", [LlamaRunner, HFRunner])
def test_chunked_prefill_and_decode_rows_match_the_full_forward(tiny_base, seqs, runner_cls):
    ref = reference(tiny_base)
    runner = runner_cls(AutoModelForCausalLM.from_pretrained(tiny_base), 4, 128)
    got = run_steps(runner, seqs, PLAN)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            full = ref(torch.tensor([s])).logits[0]
            assert torch.allclose(got[i], full, atol=1e-4), (i, (got[i] - full).abs().max())
            assert torch.equal(got[i].argmax(-1), full.argmax(-1))


def test_projections_large_enough_are_prepacked_match_and_keep_one_copy():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    ref = LlamaForCausalLM(config).eval()
    model = LlamaForCausalLM(config).eval()
    model.load_state_dict(ref.state_dict())
    runner = LlamaRunner(model, 2, 64)
    layer = runner.layers[0]
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    assert layer.qkv.packed and layer.gate_up.packed and layer.down.packed and runner.lm_head.packed
    assert model.model.layers[0].self_attn.q_proj.weight.numel() == 0  # the packed copy is the only one
    ids = torch.randint(0, 1000, (20,))
    got = run_steps(runner, [ids.tolist()], [[(0, 0, 12, 0)], [(0, 12, 20, 0)]])[0]
    with torch.no_grad():
        assert torch.allclose(got, ref(ids[None]).logits[0], atol=1e-4)


@pytest.mark.parametrize("runner_cls", [LlamaRunner, HFRunner])
def test_two_adapters_and_the_base_in_one_batch_match_peft(tiny_base, tiny_adapters, seqs, runner_cls):
    runner = runner_cls(AutoModelForCausalLM.from_pretrained(tiny_base), 4, 128)
    index = {name: runner.lora.add(name, path) for name, path in tiny_adapters.items()}
    chosen = {0: index["alpha"], 1: 0, 2: index["beta"]}
    got = run_steps(runner, seqs, PLAN, chosen)
    with torch.no_grad():
        for i, name in ((0, "alpha"), (1, None), (2, "beta")):
            ref = reference(tiny_base, tiny_adapters[name] if name else None)
            full = ref(torch.tensor([seqs[i]])).logits[0]
            assert torch.allclose(got[i], full, atol=1e-4), (name, (got[i] - full).abs().max())
    plain = reference(tiny_base)(torch.tensor([seqs[0]])).logits[0]
    assert not torch.allclose(got[0], plain, atol=1e-2), "the adapter changed nothing"


def test_dora_is_refused_by_the_llama_runner_with_the_reason(tiny_base, tmp_path):
    from peft import LoraConfig, get_peft_model

    from tunewright.engine.lora import UnsupportedAdapter

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base), LoraConfig(r=2, use_dora=True))
    model.save_pretrained(tmp_path / "dora")
    runner = LlamaRunner(AutoModelForCausalLM.from_pretrained(tiny_base), 2, 64)
    with pytest.raises(UnsupportedAdapter, match="DoRA"):
        runner.lora.add("d", tmp_path / "dora")
    with pytest.raises(ValueError, match="letters, digits"):
        runner.lora.add("../up", tmp_path / "dora")
