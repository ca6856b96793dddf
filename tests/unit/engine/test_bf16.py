"""The engine in bfloat16: compared with transformers' own bf16 forward by closeness, not equality.

bf16 keeps 8 significant bits, so the engine and transformers (the same weights, other GEMM
shapes and summation orders: fused q/k/v, chunked prefill, cached prefixes) round differently at
every layer. On the tiny model they differ by about 0.01 nats per token on average, 0.11 at most,
and rank the same next token first on 99.4-99.5% of positions (2 cores of an Intel Xeon with
AMX). The thresholds below leave about five times that room for other CPUs and kernels (oneDNN
or MKL, AMX or AVX-512 BF16); a wrong dtype, cache or adapter path misses them by far. fp32 keeps
its exact tests (test_engine.py, test_runner.py).

The same comparison holds on a CUDA GPU (tests marked `gpu`, skipped without one: `make test-gpu`),
where cuBLAS and the SDPA kernels round differently again, against transformers on the same GPU.
"""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tunewright.core.modeling import load_tokenizer
from tunewright.demo.sample_data import write_sample_data
from tunewright.engine import Engine, EngineConfig, SamplingParams

MEAN_NATS, MAX_NATS, MIN_TOP1 = 0.05, 0.5, 0.97


@pytest.fixture(scope="module")
def conversations(tmp_path_factory):
    raw = write_sample_data(tmp_path_factory.mktemp("raw"))
    return [json.loads(line)["messages"] for line in raw["golden"].read_text().splitlines()]


def bf16(tiny_base, device="cpu"):
    return AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.bfloat16).to(device).eval()


def closeness(engine, reference, conversations, adapter=None):
    """(mean and max |log-prob difference|, top-1 agreement) of the engine's prompt log-probs of each golden
    conversation (prompt and reference answer) against `reference`'s forward."""
    sequences = [
        engine.chat_prompt(c[:-1]) + engine.tokenizer(c[-1]["content"], add_special_tokens=False)["input_ids"]
        for c in conversations
    ]
    outs = engine.generate(sequences, SamplingParams(max_tokens=1, prompt_logprobs=1), adapter)
    diffs, hits = [], 0
    for ids, out in zip(sequences, outs, strict=True):
        with torch.no_grad():
            expected = torch.log_softmax(reference(torch.tensor([ids], device=reference.device)).logits[0].float(), -1)
        for j in range(1, len(ids)):
            got = out.prompt_logprobs[j]
            diffs.append(abs(got.logprob - float(expected[j - 1, ids[j]])))
            hits += got.top[0][0] == int(expected[j - 1].argmax())
    return sum(diffs) / len(diffs), max(diffs), hits / len(diffs)


def assert_close(found):
    mean, worst, top1 = found
    assert mean <= MEAN_NATS and worst <= MAX_NATS and top1 >= MIN_TOP1, found


@pytest.mark.parametrize("chunk", [512, 7], ids=["whole-prompts", "chunked-prefill"])
def test_the_bf16_engine_agrees_with_transformers_bf16_forward(tiny_base, conversations, chunk):
    engine = Engine(
        bf16(tiny_base), load_tokenizer(tiny_base), EngineConfig(max_model_len=256, max_num_batched_tokens=chunk)
    )
    try:
        assert engine.runner.cache.keys[0].dtype == torch.bfloat16  # the KV cache is in the model's dtype
        assert_close(closeness(engine, bf16(tiny_base), conversations))
    finally:
        engine.shutdown()


def test_prefix_caching_in_bf16_changes_log_probs_only_within_the_tolerance(tiny_base, conversations):
    """A prompt whose shared system prompt comes from the cache: its first answer token and that token's
    log-prob are transformers' up to bf16 rounding (the chosen token is within MAX_NATS of the best)."""
    engine = Engine(bf16(tiny_base), load_tokenizer(tiny_base), EngineConfig(max_model_len=256, prefix_caching=True))
    reference = bf16(tiny_base)
    prompts = [engine.chat_prompt(c[:-1]) for c in conversations]
    try:
        engine.generate(prompts[:1], SamplingParams(max_tokens=1))  # caches the system prompt they share
        diffs = []
        for prompt in prompts[1:]:
            (out,) = engine.generate([prompt], SamplingParams(max_tokens=1, logprobs=1))
            with torch.no_grad():
                expected = torch.log_softmax(reference(torch.tensor([prompt])).logits[0, -1].float(), -1)
            chosen = out.logprobs[0]
            diffs.append(abs(chosen.logprob - float(expected[chosen.token_id])))
            assert float(expected.max() - expected[chosen.token_id]) <= MAX_NATS
        assert engine.reused_tokens > 0
        assert sum(diffs) / len(diffs) <= MEAN_NATS and max(diffs) <= MAX_NATS, diffs
    finally:
        engine.shutdown()


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_lora_deltas_in_bf16_agree_with_peft_in_bf16(tiny_base, tiny_adapters, conversations, name):
    engine = Engine(bf16(tiny_base), load_tokenizer(tiny_base), EngineConfig(max_model_len=256), tiny_adapters)
    reference = PeftModel.from_pretrained(bf16(tiny_base), str(tiny_adapters[name])).eval()
    try:
        assert_close(closeness(engine, reference, conversations, name))
    finally:
        engine.shutdown()


def test_a_large_bf16_projection_runs_on_every_cpu():
    """Large enough to be prepacked for oneDNN where its bf16 path exists; elsewhere (AVX2-only CPUs,
    whose reorder refuses bf16) it must stay a plain bf16 linear rather than fail."""
    from tunewright.engine.llama import PACK_MIN_ELEMENTS, Projection

    torch.manual_seed(0)
    linear = torch.nn.Linear(512, PACK_MIN_ELEMENTS // 512, bias=False).to(torch.bfloat16)
    want_weight = linear.weight.data.clone()
    x = torch.randn(3, 512, dtype=torch.bfloat16)
    got = Projection([linear])(x).float()
    want = x.float() @ want_weight.float().t()
    assert got.shape == want.shape
    assert float((got - want).norm() / want.norm()) <= 0.01  # bf16 rounding of the output only


@pytest.mark.parametrize("chunk", [512, 7], ids=["whole-prompts", "chunked-prefill"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_engine_on_cuda_agrees_with_transformers_on_cuda(tiny_base, conversations, chunk, dtype):
    def model():
        return AutoModelForCausalLM.from_pretrained(tiny_base, dtype=dtype).to("cuda").eval()

    engine = Engine(model(), load_tokenizer(tiny_base), EngineConfig(max_model_len=256, max_num_batched_tokens=chunk))
    try:
        cache = engine.runner.cache.keys[0]
        assert (cache.device.type, cache.dtype) == ("cuda", dtype)
        assert_close(closeness(engine, model(), conversations))
    finally:
        engine.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_lora_adapters_and_prefix_caching_on_cuda(tiny_base, tiny_adapters, conversations):
    config = EngineConfig(max_model_len=256, prefix_caching=True)
    engine = Engine(bf16(tiny_base, "cuda"), load_tokenizer(tiny_base), config, tiny_adapters)
    prompts = [engine.chat_prompt(c[:-1]) for c in conversations]
    try:
        for name in ("alpha", "beta"):
            reference = PeftModel.from_pretrained(bf16(tiny_base, "cuda"), str(tiny_adapters[name])).eval()
            assert_close(closeness(engine, reference, conversations, name))
            reused = engine.reused_tokens
            engine.generate(prompts[:1], SamplingParams(max_tokens=1), name)  # caches the system prompt
            for prompt in prompts[1:]:
                (out,) = engine.generate([prompt], SamplingParams(max_tokens=1, logprobs=1), name)
                with torch.no_grad():
                    logits = reference(torch.tensor([prompt], device="cuda")).logits[0, -1].float()
                expected = torch.log_softmax(logits, -1)
                chosen = out.logprobs[0]
                assert abs(chosen.logprob - float(expected[chosen.token_id])) <= MAX_NATS
                assert float(expected.max() - expected[chosen.token_id]) <= MAX_NATS
            assert engine.reused_tokens > reused
    finally:
        engine.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_seeded_sample_on_cuda_repeats_and_stops_where_asked(tiny_base, conversations):
    engine = Engine(bf16(tiny_base, "cuda"), load_tokenizer(tiny_base), EngineConfig(max_model_len=256))
    prompts = [engine.chat_prompt(c[:-1]) for c in conversations[:4]]
    params = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, seed=7, min_tokens=3)
    try:
        first, again = engine.generate(prompts, params), engine.generate(prompts, params)
        assert [c.token_ids for c in first] == [c.token_ids for c in again]
        assert all(3 <= len(c.token_ids) <= 12 for c in first)
    finally:
        engine.shutdown()
