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
from tunewright.core.workspace import init_workspace
from tunewright.demo.sample_data import write_sample_data
from tunewright.engine import Engine
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.service import Served

TRAIN = [
    "model.name_or_path=models/smollm2",
    "model.max_seq_length=256",
    "training.max_steps=6",
    "training.micro_batch_size=4",
    "training.eval_every=3",
    "training.learning_rate=0.001",
    "peft.rank=8",
    "peft.alpha=16",
    "checkpoint.every=null",
]
pytestmark = pytest.mark.real

EVAL = [
    "generation.max_new_tokens=24",
    "tasks=[{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{type: token_f1}, {type: rouge}, {type: nll}]}]",
    "gates=[{metric: golden.nll, max_drop: 0.0}]",  # training on this format must lower the references' NLL
]
PROMPT = [{"role": "user", "content": "The table finance.ledger is stale. What should I do?"}]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, smollm2: Path) -> Path:
    ws = tmp_path_factory.mktemp("real") / "ws"
    init_workspace(ws)
    write_sample_data(ws / "data/raw")
    (ws / "models/smollm2").symlink_to(smollm2)
    assert main(["curate", "-w", str(ws)]) == 0
    assert main(["train", "-w", str(ws), *TRAIN]) == 0
    return ws


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
