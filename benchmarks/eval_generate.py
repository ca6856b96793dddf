"""Eval generation: `tunewright eval`'s generation path vs a plain transformers `generate` loop.

The quickstart's test split (the sample data curated into data/splits/test.jsonl) is
answered greedily, up to 64 new tokens, on the same model by:

- tunewright: the eval's local target (the serving engine, batch 16), engine set-up included;
- transformers `generate`, one prompt at a time (batch 1);
- transformers `generate` on left-padded batches of 16 (the same batch size);
- tunewright against an endpoint: `tunewright serve` on the same model in a subprocess,
  asked at concurrency 1 and 8 through the eval's endpoint client.

Output tokens/s count each method's own generated tokens (up to and including the end
token); with greedy decoding they agree, and the script prints the counts to show it.
Methods alternate over `--repeats` rounds so drift on a shared machine hits all alike.

    python benchmarks/eval_generate.py --model smollm2 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from serve_load import model_dir
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunewright.core.model_source import ModelSource
from tunewright.evaluate.config import EndpointConfig, TaskConfig
from tunewright.evaluate.items import load_task
from tunewright.evaluate.targets import EndpointTarget, LocalTarget
from tunewright.runtimes.net import free_port

MAX_NEW = 64
BATCH = 16


def test_split(tmp: Path) -> list[list[dict[str, str]]]:
    """The quickstart's curated test split, as the eval reads it."""
    ws = tmp / "ws"
    cli = Path(sys.executable).parent / "tunewright"
    subprocess.run([str(cli), "init", str(ws), "--sample"], check=True, capture_output=True)
    subprocess.run([str(cli), "curate", "-w", str(ws)], check=True, capture_output=True)
    task = load_task(TaskConfig(name="support", data="data/splits/test.jsonl"), ws / "data/splits/test.jsonl")
    return [it.prompt for it in task.items]


def count_tokens(tokenizer, texts: list[str]) -> int:
    """Generated tokens of text answers: re-tokenised, plus the end token unless the answer hit the limit."""
    return sum(min(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1, MAX_NEW) for t in texts)


def run_tunewright(model: Path, chats: list, tokenizer) -> tuple[float, int]:
    target = LocalTarget(ModelSource("bench", str(model)), batch_size=BATCH)
    _ = target.tokenizer  # the model load is not timed; the engine set-up is
    start = time.perf_counter()
    answers = target.generate(chats, MAX_NEW)
    seconds = time.perf_counter() - start
    target.close()
    return seconds, count_tokens(tokenizer, answers)


def hf_generate(model, tokenizer, chats: list, batch: int) -> tuple[float, int]:
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    configured = model.generation_config.eos_token_id
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=MAX_NEW,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            ended = next((k for k, t in enumerate(row) if t in eos), None)
            tokens += len(row) if ended is None else ended + 1
    return time.perf_counter() - start, tokens


def run_endpoint(url: str, chats: list, tokenizer, concurrency: int) -> tuple[float, int]:
    target = EndpointTarget(url, "bench", EndpointConfig(concurrency=concurrency))
    start = time.perf_counter()
    answers = target.generate(chats, MAX_NEW)
    seconds = time.perf_counter() - start
    target.close()
    return seconds, count_tokens(tokenizer, answers)


def start_server(model: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cli = Path(sys.executable).parent / "tunewright"
    cmd = [str(cli), "serve", str(model), "--port", str(port), "--workspace", str(model.parent)]
    cmd += ["model_name=bench", f"max_new_tokens={MAX_NEW}", "access_log=false", f"batching.max_num_seqs={BATCH}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health/ready", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("tunewright serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2, tiny, or a model directory")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = model_dir(args.model, Path(tmp))
        chats = test_split(Path(tmp))[: args.limit]
        tokenizer = AutoTokenizer.from_pretrained(model)
        hf = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32).eval()
        server, url = start_server(model)
        methods = {
            "tunewright eval (engine, batch 16)": lambda: run_tunewright(model, chats, tokenizer),
            "transformers generate, batch 1": lambda: hf_generate(hf, tokenizer, chats, 1),
            "transformers generate, batch 16": lambda: hf_generate(hf, tokenizer, chats, BATCH),
            "tunewright eval --endpoint, concurrency 1": lambda: run_endpoint(url, chats, tokenizer, 1),
            "tunewright eval --endpoint, concurrency 8": lambda: run_endpoint(url, chats, tokenizer, 8),
        }
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in methods}
        try:
            for r in range(args.repeats):
                for name, fn in methods.items():
                    seconds, tokens = fn()
                    runs[name].append((seconds, tokens))
                    print(f"round {r + 1}: {name}: {tokens} tokens in {seconds:.1f} s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    rates = {name: statistics.median(t / s for s, t in rs) for name, rs in runs.items()}
    reference = rates["transformers generate, batch 1"]
    print(f"\n{len(chats)} items of the quickstart's test split, model {args.model}, {MAX_NEW} new tokens max, greedy")
    print(f"{'method':<44} {'tokens':>7} {'tok/s':>8} {'vs batch-1 generate':>20}")
    for name, rate in rates.items():
        tokens = runs[name][-1][1]
        print(f"{name:<44} {tokens:>7} {rate:>8.1f} {rate / reference:>19.2f}x")


if __name__ == "__main__":
    main()
