"""The whole loop on a real pretrained model: curate -> train (LoRA) -> eval -> export -> serve.

SmolLM2 pads with its EOS, ties its embeddings and has a 49,152-token vocabulary: the
adapter must stay small and load with plain peft on the untouched base, and every export
must keep the base's vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunewright.cli.main import main
from tunewright.core.model_source import resolve_model
from tunewright.engine import Engine
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.service import Served

pytestmark = pytest.mark.real

EVAL = [
    "generation.max_new_tokens=24",
    "tasks=[{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{type: token_f1}, {type: rouge}, {type: nll}]}]",
    "gates=[{metric: golden.nll, max_drop: 0.0}]",  # training on this format must lower the references' NLL
]
PROMPT = [{"role": "user", "content": "The table finance.ledger is stale. What should I do?"}]


@pytest.fixture(scope="module")
def workspace(smol_workspace: Path) -> Path:
    return smol_workspace


def latest(ws: Path, stage: str) -> Path:
    def started(run: Path) -> str:
        return json.loads((run / "manifest.json").read_text())["started_at"]

    return max((ws / "runs").glob(f"{stage}-*"), key=started)


def logits(model: torch.nn.Module, tokenizer, messages=PROMPT) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(**ids).logits


def test_the_adapter_is_small_and_loads_with_plain_peft_on_the_untouched_base(workspace, smollm2):
    adapter = latest(workspace, "train") / "adapter"
    assert (adapter / "adapter_model.safetensors").stat().st_size < 10_000_000
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        assert all("lora_" in k for k in fh.keys())  # noqa: SIM118 - safe_open is not a mapping
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "models/smollm2"
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    base = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    before = logits(base, tokenizer)
    plain = PeftModel.from_pretrained(base, str(adapter)).eval()
    assert plain.get_input_embeddings().weight.shape[0] == 49152
    ours, our_tokenizer = resolve_model(workspace, "latest:train").load()
    assert len(our_tokenizer) == len(tokenizer) == 49152
    assert our_tokenizer.pad_token_id == our_tokenizer.eos_token_id  # SmolLM2 pads with EOS; nothing was added
    expected = logits(plain, tokenizer)
    assert torch.allclose(logits(ours, our_tokenizer), expected, atol=1e-5)
    assert not torch.allclose(before, expected, atol=1e-3), "the adapter changed nothing"


def test_eval_export_and_serve_on_the_real_model(workspace):
    ws = workspace
    assert main(["eval", "-w", str(ws), "--model", "latest:train", "--baseline", "base", *EVAL]) == 0
    results = json.loads((latest(ws, "eval") / "manifest.json").read_text())["results"]
    assert results["model_run"] == latest(ws, "train").name and results["verdict"] == "GO"
    summary = json.loads((latest(ws, "eval") / "eval.json").read_text())
    nll = {m["name"]: m for m in summary["tasks"][0]["metrics"]}["nll"]
    assert 0 < nll["model"]["value"] < nll["baseline"]["value"] < 10  # per token, end-of-turn included
    assert main(["export", "latest:train", "--format", "adapter", "--name", "smol-adapter", "-w", str(ws)]) == 0
    assert main(["export", "latest:train", "--format", "merged", "--name", "smol-merged", "-w", str(ws)]) == 0
    merged = ws / "exports/smol-merged/latest"
    assert json.loads((merged / "config.json").read_text())["vocab_size"] == 49152
    assert json.loads((merged / "parity.json").read_text())["diverged"] == []
    assert AutoModelForCausalLM.from_pretrained(merged).get_input_embeddings().weight.shape[0] == 49152

    for name in ("smol-merged", "smol-adapter"):
        source = resolve_model(ws, f"exports/{name}")
        app = create_app(lambda source=source, name=name: (Engine.from_source(source), Served(name, source.base)))
        with BackgroundServer(app) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
            resp = client.chat.completions.create(model=name, messages=PROMPT, temperature=0, max_tokens=16)
        assert resp.choices[0].message.content.strip()
        assert resp.choices[0].finish_reason in ("stop", "length")
        assert resp.usage.completion_tokens <= 16


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_a_gguf_export_answers_in_llama_cpp_as_the_trained_model_does(workspace, gguf_type):
    from gguf import GGUFReader

    ws, name = workspace, f"smol-{gguf_type}"
    args = ["--format", "gguf", "--gguf-type", gguf_type, "--name", name, "--verify-with", "llama.cpp"]
    assert main(["export", "latest:train", *args, "-w", str(ws)]) == 0
    version = ws / f"exports/{name}/latest"
    parity = json.loads((version / "parity.json").read_text())
    assert parity["verified_with"]["engine"] == "llama.cpp" and parity["verified_with"]["prompts"] == 20
    least = {"f16": 0.99, "q8_0": 0.95}[gguf_type]  # rounded weights: judged by top-1 agreement on trained answers
    assert parity["min_top1_agreement"] == least
    assert parity["top1_agreement"] >= least and parity["verified_with"]["top1_agreement"] >= least
    reader = GGUFReader(version / f"{name}-{gguf_type}.gguf")
    assert len(reader.get_field("tokenizer.ggml.tokens").data) == 49152
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and len(names) == 2 + 9 * 30  # tied head, 30 blocks


def test_llama_cpp_catches_a_gguf_whose_rotary_layout_was_not_converted(workspace, monkeypatch, capsys):
    import tunewright.export.gguf_file as gguf_file

    monkeypatch.setattr(gguf_file, "permute_rotary", lambda weight, heads: weight)
    monkeypatch.setattr(gguf_file, "unpermute_rotary", lambda weight, heads: weight)
    ws = workspace
    args = ["--format", "gguf", "--name", "smol-unpermuted", "--verify-with", "llama.cpp"]
    assert main(["export", "latest:train", *args, "-w", str(ws)]) == 1
    assert "the export run by llama.cpp diverges from the trained model" in capsys.readouterr().err
    assert not (ws / "exports/smol-unpermuted").exists()


def test_the_real_model_serves_in_bf16_as_close_to_fp32_as_transformers_bf16_is(workspace, smollm2):
    """SmolLM2 with its trained adapter, served in bfloat16. Over 30 layers two bf16 computations differ by
    bf16's own noise (about 0.07 nats per token between ours and transformers', as much as either differs
    from fp32), so the engine is held to transformers' own bf16 error against the fp32 model: at most 1.5x
    it. The server then answers through the OpenAI client."""
    from tunewright.engine import EngineConfig, SamplingParams
    from tunewright.serve.config import ServeConfig

    source = ServeConfig(dtype="bfloat16").served(resolve_model(workspace, "latest:train"))
    assert source.dtype == "bfloat16"
    engine = Engine.from_source(source, EngineConfig(max_model_len=512))
    answer = "First step: check the upstream job's logs."
    ids = engine.chat_prompt(PROMPT) + engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    (out,) = engine.generate([ids], SamplingParams(max_tokens=1, prompt_logprobs=1))
    engine.shutdown()

    def reference(dtype: torch.dtype) -> torch.Tensor:
        base = AutoModelForCausalLM.from_pretrained(smollm2, dtype=dtype)
        model = PeftModel.from_pretrained(base, str(source.adapter)).eval()
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)

    fp32, bf16 = reference(torch.float32), reference(torch.bfloat16)

    def error(logprob_of) -> float:
        return sum(abs(logprob_of(j) - float(fp32[j - 1, ids[j]])) for j in range(1, len(ids))) / (len(ids) - 1)

    ours, theirs = error(lambda j: out.prompt_logprobs[j].logprob), error(lambda j: float(bf16[j - 1, ids[j]]))
    assert ours <= 1.5 * theirs + 0.01, (ours, theirs)
    app = create_app(lambda: (Engine.from_source(source), Served("smol", source.base)))
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        resp = client.chat.completions.create(model="smol", messages=PROMPT, temperature=0, max_tokens=16)
    assert resp.choices[0].message.content.strip() and resp.usage.completion_tokens <= 16
