"""Serving under concurrent load: tunewright serve vs `transformers serve --continuous-batching` vs vLLM (CPU build).

Each server is started as its own process on 127.0.0.1 with the same model directory, in the
same `--dtype` (default: bfloat16 where the CPU has bf16 matrix units, as vLLM's own `auto`
picks, else float32), warmed up, then a bounded load generator sends a fixed number of streaming chat requests at
concurrency 1, 8 and 32 (64 output tokens each: `max_tokens` and, where the server honours
it, `min_tokens`), and records output tokens/s for the level, time to first token (p50,
p95), inter-token latency (p50) and errors. Tools alternate over `--repeats` rounds, so a
shared machine's drift hits all of them alike. A batch-1 `generate` loop in this process
gives the memory-bandwidth reference for concurrency 1. Ratios are printed per level.

    python benchmarks/serve_load.py --model smollm2 --repeats 2
    python benchmarks/serve_load.py --model smollm2 --dtype float32   # the fp32 table
    python benchmarks/serve_load.py --model tiny --tools tunewright,transformers
    python benchmarks/serve_load.py --model smollm2 --tools tunewright,vllm --response-format both --levels 1,32

`--response-format json_schema` asks every request for a strict json_schema answer (STEPS_SCHEMA: a
title, 8-12 steps and a severity, long enough to fill the token budget); `both` runs free text and the
schema on the same server process and prints what the schema costs each server.

vLLM runs from its own environment (`--vllm-python`, default .venv-vllm/bin/python, as
`python -m vllm.entrypoints.openai.api_server`); it is skipped when absent. Every server gets
the same thread count (`--threads`, default: all cores).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tunewright.core.precision import fast_dtypes
from tunewright.runtimes.net import free_port
from tunewright.runtimes.vllm import stop_process

PROMPTS = [
    "Write a detailed explanation of how a nightly data pipeline can fail and how an on-call engineer should respond.",
    "Describe, step by step, how to investigate a dashboard that shows stale numbers.",
    "Explain to a new analyst why duplicate rows appear in a warehouse table and how to prevent them.",
    "Write a short story about a data engineer who fixes a broken schema migration at night.",
]
LEVELS = (1, 8, 32)
STEPS_SCHEMA = {  # a json_schema answer long enough for every request to reach its token budget
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "steps": {"type": "array", "items": {"type": "string", "maxLength": 160}, "minItems": 8, "maxItems": 12},
        "severity": {"enum": ["low", "medium", "high"]},
    },
    "required": ["title", "steps", "severity"],
    "additionalProperties": False,
}
FORMATS = {
    "text": None,
    "json_schema": {"type": "json_schema", "json_schema": {"name": "runbook", "schema": STEPS_SCHEMA, "strict": True}},
}


def model_dir(name: str, tmp: Path) -> Path:
    if name == "smollm2":
        from tunewright.demo.real_model import prepare_smollm2

        return prepare_smollm2()
    if name == "tiny":
        from tunewright.core.io import read_jsonl_strict
        from tunewright.demo.sample_data import write_sample_data
        from tunewright.demo.setup import build_base_model

        raw = write_sample_data(tmp / "raw")
        build_base_model(tmp / "tiny", [r["text"] for r in read_jsonl_strict(raw["handbook"])], steps=30)
        return tmp / "tiny"
    return Path(name)


def server_command(tool: str, model: Path, port: int, vllm_python: str, dtype: str) -> tuple[list[str], str, str]:
    """(command, model name to send, readiness URL) for one tool, serving in `dtype`."""
    here = Path(sys.executable).parent
    if tool == "tunewright":
        cmd = [str(here / "tunewright"), "serve", str(model), "--port", str(port), "--workspace", str(model.parent)]
        cmd += ["model_name=bench", "max_new_tokens=64", "access_log=false", "batching.max_num_seqs=32"]
        return [*cmd, f"dtype={dtype}"], "bench", f"http://127.0.0.1:{port}/v1/health/ready"
    if tool == "transformers":
        cmd = [str(here / "transformers"), "serve", str(model), "--continuous-batching", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--dtype", dtype, "--device", "cpu"]
        return cmd, str(model), f"http://127.0.0.1:{port}/health"
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1"]
    context = json.loads((model / "config.json").read_text()).get("max_position_embeddings", 2048)
    cmd += ["--port", str(port), "--dtype", dtype, "--served-model-name", "bench"]
    cmd += ["--max-model-len", str(min(2048, context))]
    cmd += ["--max-num-seqs", "32", "--gpu-memory-utilization", "0.5"]  # on CPUs: the share of RAM it reserves
    return cmd, "bench", f"http://127.0.0.1:{port}/health"


async def one_request(
    client: httpx.AsyncClient, url: str, model: str, prompt: str, tokens: int, exact: bool, fmt: dict | None
) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if exact:  # transformers serve refuses min_tokens; its answers may end early (reported per request)
        body["min_tokens"] = tokens
    if fmt is not None:
        body["response_format"] = fmt
    start = time.perf_counter()
    stamps, usage = [], None
    try:
        async with client.stream("POST", url, json=body, timeout=600) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices", []):
                    if (choice.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter())
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__}
    if not stamps:
        return {"error": "no tokens"}
    count = usage["completion_tokens"] if usage else len(stamps)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {"ttft": stamps[0] - start, "gaps": gaps, "tokens": count}


async def load_level(
    url: str,
    model: str,
    concurrency: int,
    requests: int,
    tokens: int,
    exact: bool,
    fmt: dict | None = None,
    prompts: list[str] = PROMPTS,
) -> dict:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def bounded(i: int) -> dict:
            async with gate:
                prompt = f"Request {i}. {prompts[i % len(prompts)]}"  # distinct: only the template is shared
                return await one_request(client, url, model, prompt, tokens, exact, fmt)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        seconds = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    ttfts = sorted(r["ttft"] for r in ok)
    gaps = [g for r in ok for g in r["gaps"]]
    return {
        "tok_s": sum(r["tokens"] for r in ok) / seconds,
        "ttft_p50": statistics.median(ttfts) if ttfts else None,
        "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))] if ttfts else None,
        "itl_p50": statistics.median(gaps) if gaps else None,
        "errors": len(results) - len(ok),
        "tokens": sum(r["tokens"] for r in ok),
        "requests": len(ok),
    }


@contextmanager
def running(cmd: list[str], ready: str, name: str, env: dict[str, str]) -> Iterator[None]:
    """A server process started from `cmd`, its output in a log, until `ready` answers 200; stopped on exit."""
    log = open(Path(tempfile.gettempdir()) / f"serve-bench-{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log.name}")
            time.sleep(1)
        yield
    finally:
        stop_process(proc)
        log.close()


def run_tool(tool: str, model: Path, args: argparse.Namespace) -> dict[tuple[str, int], dict]:
    port = free_port()
    cmd, name, ready = server_command(tool, model, port, args.vllm_python, args.dtype)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB of KV cache for vLLM's CPU backend
    }
    with running(cmd, ready, tool, env):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        exact = tool != "transformers"
        results = {}
        for fmt in args.formats:
            asyncio.run(load_level(url, name, 2, 2, 8, exact, FORMATS[fmt]))  # warm-up
            for c in args.levels:
                results[(fmt, c)] = asyncio.run(
                    load_level(url, name, c, max(4, 2 * c), args.tokens, exact, FORMATS[fmt])
                )
        return results


def generate_reference(model: Path, tokens: int, threads: int, dtype: str) -> float:
    """Batch-1 greedy `generate` tokens/s in this process: the bandwidth limit at concurrency 1."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        lm.generate(**ids, max_new_tokens=4, do_sample=False)
        start = time.perf_counter()
        for _ in range(3):
            lm.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return 3 * tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--tools", default="tunewright,transformers,vllm")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--vllm-python", default=str(Path(".venv-vllm/bin/python").absolute()))
    ap.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="bfloat16" if "bfloat16" in fast_dtypes("cpu") else "float32",
        help="every server's weights and KV cache (default: bfloat16 where the CPU has bf16 matrix units)",
    )
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels, comma-separated")
    ap.add_argument(
        "--response-format",
        default="text",
        choices=["text", "json_schema", "both"],
        help="free text, a json_schema response format (STEPS_SCHEMA), or both on every server",
    )
    args = ap.parse_args()
    args.levels = [int(c) for c in args.levels.split(",")]
    args.formats = list(FORMATS) if args.response_format == "both" else [args.response_format]
    tools = [t for t in args.tools.split(",") if t]
    if "vllm" in tools and not Path(args.vllm_python).exists():
        print(f"vLLM skipped: no {args.vllm_python}", file=sys.stderr)
        tools.remove("vllm")
    with tempfile.TemporaryDirectory() as tmp:
        model = model_dir(args.model, Path(tmp))
        reference = generate_reference(model, args.tokens, args.threads, args.dtype)
        runs: dict[str, list[dict[tuple[str, int], dict]]] = {t: [] for t in tools}
        for round_ in range(args.repeats):
            order = tools if round_ % 2 == 0 else list(reversed(tools))
            for tool in order:
                print(f"round {round_ + 1}: {tool} ...", file=sys.stderr, flush=True)
                try:
                    runs[tool].append(run_tool(tool, model, args))
                except RuntimeError as exc:
                    print(f"{tool} failed: {exc}", file=sys.stderr)
        runs = {t: r for t, r in runs.items() if r}
        tools = [t for t in tools if t in runs]
    print(f"model {args.model}, {args.dtype}, {args.threads} threads, {args.tokens} output tokens per request")
    print(f"batch-1 generate (bandwidth reference): {reference:.1f} tok/s")
    print(
        f"{'tool':<13}{'format':<12}{'conc':>5}{'tok/s':>9}{'TTFT p50':>10}{'TTFT p95':>10}{'ITL p50':>9}"
        f"{'tok/req':>8}{'errors':>7}"
    )
    best: dict[tuple[str, str, int], float] = {}
    for tool, rounds in runs.items():
        for fmt in args.formats:
            for c in args.levels:
                rows = [r[(fmt, c)] for r in rounds if r[(fmt, c)]["tokens"]]
                if not rows:
                    print(f"{tool:<13}{fmt:<12}{c:>5}  every request failed")
                    continue
                tok_s = sum(r["tokens"] for r in rows) / sum(r["tokens"] / r["tok_s"] for r in rows)
                per_request = sum(r["tokens"] for r in rows) / sum(r["requests"] for r in rows)
                best[(tool, fmt, c)] = tok_s

                def ms(key: str, rows: list[dict] = rows) -> str:
                    vals = [r[key] for r in rows if r[key] is not None]
                    return f"{1000 * statistics.mean(vals):.0f}ms" if vals else "-"

                errors = sum(r[(fmt, c)]["errors"] for r in rounds)
                print(
                    f"{tool:<13}{fmt:<12}{c:>5}{tok_s:>9.1f}{ms('ttft_p50'):>10}{ms('ttft_p95'):>10}"
                    f"{ms('itl_p50'):>9}{per_request:>8.1f}{errors:>7}"
                )
    for fmt in args.formats:
        for c in args.levels:
            ours = best.get(("tunewright", fmt, c))
            others = [t for t in tools if t != "tunewright" and ours and best.get((t, fmt, c))]
            parts = [f"{ours / best[(t, fmt, c)]:.2f}x {t}" for t in others]
            if c == 1 and ours and fmt == "text":
                parts.append(f"{ours / reference:.2f}x batch-1 generate")
            print(f"{fmt}, concurrency {c}: tunewright = " + ", ".join(parts))
    if len(args.formats) > 1:
        for tool in tools:
            for c in args.levels:
                free, schema = best.get((tool, "text", c)), best.get((tool, "json_schema", c))
                if free and schema:
                    print(f"{tool}, concurrency {c}: json_schema at {schema / free:.2f}x its free-text tok/s")


if __name__ == "__main__":
    main()
