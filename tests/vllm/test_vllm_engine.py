"""`tunewright serve --engine vllm` (make test-vllm): vLLM's CPU build from its own environment.

The same model directory and a LoRA adapter, served under tunewright's names, answered through
the official openai client; vLLM's greedy answers match tunewright's own engine. The server captures
(the capturing proxy in front of vLLM), so every answer here has passed through it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import SMOL_TRAIN
from tunewright.runtimes.net import free_port

pytestmark = pytest.mark.vllm

QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "What does a data pipeline do?"]


@pytest.fixture(scope="module")
def smol_adapter(smollm2, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(smollm2),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(20)  # strong enough to change greedy answers
    out = tmp_path_factory.mktemp("lora") / "smol-lora"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def captured_workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vllm-capture")


@pytest.fixture(scope="module")
def vllm_server(smollm2, smol_adapter, captured_workspace):
    python = os.environ.get("TUNEWRIGHT_VLLM")
    if not python or not Path(python).exists():
        pytest.skip("TUNEWRIGHT_VLLM names no vLLM environment: run make test-vllm")
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("tunewright")), "serve", str(smollm2), "--engine", "vllm"]
    cmd += ["--port", str(port), "--adapter", f"smol-lora={smol_adapter}", "model_name=smol"]
    cmd += ["-w", str(captured_workspace), "batching.max_model_len=1024", "capture.enabled=true"]
    cmd += ["vllm.dtype=float32", "vllm.extra_args=[--gpu-memory-utilization, '0.5']"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "vLLM did not start"
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(120)
    (window,) = (captured_workspace / "runs").glob("capture-*")  # SIGTERM ends the capture window, recorded
    results = json.loads((window / "manifest.json").read_text())["results"]
    assert results["stored"] > 0 and results["versions"]["smol-lora"] == str(smol_adapter)


def test_vllm_serves_the_model_and_the_adapter_under_tunewright_names(vllm_server):
    client = openai.OpenAI(base_url=vllm_server, api_key="unused", max_retries=0)
    assert {m.id for m in client.models.list().data} >= {"smol", "smol-lora"}
    answers = {}
    for model in ("smol", "smol-lora"):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTIONS[0]}], temperature=0, max_tokens=16
        )
        answers[model] = r.choices[0].message.content
    assert "Paris" in answers["smol"]
    assert answers["smol-lora"] != answers["smol"]


def test_vllm_and_the_tunewright_engine_answer_alike_with_and_without_the_adapter(vllm_server, smollm2, smol_adapter):
    from transformers import AutoModelForCausalLM

    from tunewright.core.modeling import load_tokenizer
    from tunewright.engine import Engine, EngineConfig, SamplingParams

    model, tokenizer = AutoModelForCausalLM.from_pretrained(smollm2), load_tokenizer(smollm2)
    engine = Engine(model, tokenizer, EngineConfig(4, 512), {"smol-lora": smol_adapter})
    client = openai.OpenAI(base_url=vllm_server, api_key="unused", max_retries=0)
    for q in QUESTIONS:
        for name, adapter in (("smol", None), ("smol-lora", "smol-lora")):
            prompt = engine.chat_prompt([{"role": "user", "content": q}])
            ours = engine.generate([prompt], SamplingParams(max_tokens=24), adapter)[0]
            theirs = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=24
            )
            assert theirs.choices[0].message.content == ours.text, (name, q)
    engine.shutdown()


def test_vllm_traffic_is_captured_without_pii_and_takes_feedback(vllm_server, captured_workspace, smol_adapter):
    from tunewright.core import capture_store as store

    client = openai.OpenAI(base_url=vllm_server, api_key="unused", max_retries=0)
    ask = [{"role": "user", "content": "My email is dana.smith@example.com. What is the capital of France?"}]
    whole = client.chat.completions.create(model="smol", messages=ask, temperature=0, max_tokens=16)
    chunks = list(
        client.chat.completions.create(
            model="smol-lora", messages=ask, temperature=0, max_tokens=16, stream=True, user="team-a"
        )
    )
    assert all(c.choices for c in chunks)  # the usage chunk capture asked vLLM for is not passed on
    done = httpx.post(f"{vllm_server}/feedback", json={"id": whole.id, "score": 1, "comment": "right"}, timeout=30)
    assert done.status_code == 200, done.text
    assert httpx.post(f"{vllm_server}/feedback", json={"id": "chatcmpl-0", "score": 1}).status_code == 404
    metrics = httpx.get(vllm_server.removesuffix("/v1") + "/metrics").text
    assert "vllm:" in metrics and "tunewright_capture_enabled 1.0" in metrics

    conn = store.connect(captured_workspace / "monitor/capture.sqlite", readonly=True)
    rows = {r["id"]: r for r in store.read_requests(conn)}
    plain, streamed = rows[whole.id], rows[chunks[0].id]
    assert plain["response"]["choices"][0]["content"] == whole.choices[0].message.content
    assert plain["feedback"][0]["score"] == 1 and plain["completion_tokens"] == whole.usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed["response"]["choices"][0]["content"] == text and streamed["completion_tokens"] > 0
    assert streamed["adapter"] == "smol-lora" and streamed["version"] == str(smol_adapter)
    assert streamed["workload"] == "team-a" and streamed["ttft_s"] > 0
    for path in captured_workspace.rglob("*"):
        if path.is_file():
            assert b"dana.smith@example.com" not in path.read_bytes(), path


def vllm_on_cpu(ws: Path) -> None:
    """Give vLLM a RAM share in the workspace's serve config (this host's vLLM runs on the CPU)."""
    import yaml

    serve = ws / "configs/serve.yaml"
    cfg = yaml.safe_load(serve.read_text())
    cfg["vllm"]["extra_args"] = ["--gpu-memory-utilization", "0.5"]
    serve.write_text(yaml.safe_dump(cfg))


def test_export_verify_with_vllm_answers_the_golden_prompts_like_the_trained_model(smol_workspace):
    from tunewright.cli.main import main

    if not os.environ.get("TUNEWRIGHT_VLLM"):
        pytest.skip("TUNEWRIGHT_VLLM names no vLLM environment: run make test-vllm")
    ws = smol_workspace
    vllm_on_cpu(ws)
    for fmt in ("merged", "adapter"):
        name = f"smol-{fmt}-vllm"
        args = ["--format", fmt, "--name", name, "--verify-with", "vllm", "-w", str(ws)]
        assert main(["export", "latest:train", *args]) == 0
        parity = json.loads((ws / f"exports/{name}/v1/parity.json").read_text())
        assert parity["verified_with"] == {"engine": "vllm", "prompts": 20, "diverged": []}
        assert sum(parity["answers"].values()) == 20  # tool and extraction prompts among them


def test_vllm_makes_the_same_tool_calls_as_a_tool_trained_model(smol_workspace):
    """SmolLM2 does not call tools on its own, so a LoRA is trained on the embedded data (tool calls among it) until
    it does; its export, verified with vLLM (hermes parser, the tool-aware template), must make the same calls,
    by name and arguments, on the golden tool prompts."""
    from tunewright.cli.main import main
    from tunewright.core.runs import find_run

    if not os.environ.get("TUNEWRIGHT_VLLM"):
        pytest.skip("TUNEWRIGHT_VLLM names no vLLM environment: run make test-vllm")
    ws = smol_workspace
    vllm_on_cpu(ws)
    longer = ["training.max_steps=40", "model.max_seq_length=512"]  # later overrides win
    assert main(["train", "-w", str(ws), *SMOL_TRAIN, *longer]) == 0
    run = find_run(ws, "latest:train").name
    args = ["--format", "merged", "--name", "smol-tools", "--verify-with", "vllm", "-w", str(ws)]
    assert main(["export", run, *args]) == 0
    parity = json.loads((ws / "exports/smol-tools/v1/parity.json").read_text())
    assert parity["answers"]["calls"] >= 2 and parity["verified_with"]["diverged"] == []
