"""What production capture costs: `tunewright serve` at concurrency 32 with `capture.enabled` off and on.

The same model is served twice from one workspace, once without capture and once with it (every
request captured, PII redaction on: each prompt carries an email, a card number and a phone
number for the detectors to find), alternating over `--repeats` rounds so a shared machine's drift
hits both alike. Each round sends `--requests` streaming chat requests of `--tokens` output tokens
(`min_tokens` = `max_tokens`) at concurrency 32 after a warm-up, and records output tokens/s and
time to first token (p50, p95). The ratios on/off are printed, with the number of rows the store
holds at the end (every request of the capture rounds must be there).

`--engine vllm` measures the same for `serve --engine vllm`: off is vLLM alone, on is vLLM behind
the capturing proxy (vLLM from `--vllm-python`, default .venv-vllm/bin/python).

    python benchmarks/serve_capture.py --model smollm2 --repeats 3
    python benchmarks/serve_capture.py --model smollm2 --repeats 3 --engine vllm
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from child_run import cpu_name
from serve_load import PROMPTS, load_level, model_dir, running

from tunewright.core.precision import fast_dtypes
from tunewright.runtimes.net import free_port

PII = " I am dana.smith@example.com, card 4111 1111 1111 1111, phone +1 415 555 0133."


def serve_round(model: Path, ws: Path, capture: bool, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> dict:
    """One server up, warmed and loaded at concurrency 32 (`extra`: more `serve` arguments); its load figures."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "tunewright"), "serve", str(model), "--port", str(port), "-w", str(ws)]
    cmd += ["model_name=bench", f"max_new_tokens={args.tokens}", "access_log=false", "batching.max_num_seqs=32"]
    cmd += [f"dtype={args.dtype}", f"capture.enabled={'true' if capture else 'false'}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    ready = f"http://127.0.0.1:{port}/v1/health/ready"  # ours: 503 until the model is loaded and warm
    if args.engine == "vllm":  # `dtype` is vLLM's --dtype too; on CPUs vLLM takes a RAM share for its KV cache
        cmd += ["--engine", "vllm", f"vllm.python={args.vllm_python}", "batching.max_model_len=2048"]
        cmd += ["vllm.extra_args=[--gpu-memory-utilization, '0.5']"]
        env["VLLM_CPU_KVCACHE_SPACE"] = "2"
        ready = f"http://127.0.0.1:{port}/health"  # vLLM's, alone or through the proxy
    with running(cmd, ready, f"capture-{int(capture)}", env):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        prompts = [p + PII for p in PROMPTS]
        asyncio.run(load_level(url, "bench", 4, 4, 8, True, prompts=prompts))  # warm-up
        return asyncio.run(load_level(url, "bench", 32, args.requests, args.tokens, True, prompts=prompts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: bf16 where the CPU computes it fast)")
    ap.add_argument("--engine", default="tunewright", choices=("tunewright", "vllm"))
    ap.add_argument("--vllm-python", default=str(Path(".venv-vllm/bin/python").absolute()))
    args = ap.parse_args()
    args.dtype = args.dtype or ("bfloat16" if "bfloat16" in fast_dtypes("cpu") else "float32")
    with tempfile.TemporaryDirectory() as tmp:
        model = model_dir(args.model, Path(tmp)).resolve()
        ws = Path(tmp) / "ws"
        ws.mkdir()
        rounds: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(args.repeats):
            for capture in (False, True) if r % 2 == 0 else (True, False):
                rounds[capture].append(serve_round(model, ws, capture, args))
                print(f"round {r} capture={capture}: {rounds[capture][-1]}", flush=True)
        from tunewright.core import capture_store as store

        conn = store.connect(ws / "monitor" / "capture.sqlite", readonly=True)
        stored = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        leaked = conn.execute("SELECT count(*) FROM requests WHERE request LIKE '%dana.smith%'").fetchone()[0]
    cpu = cpu_name()
    print(
        f"\nengine {args.engine}, model {args.model}, {args.dtype}, {args.threads} threads, CPU {cpu}; concurrency 32, "
        f"{args.requests} requests x {args.tokens} tokens, {args.repeats} rounds each"
    )
    med = {
        c: {k: statistics.median(x[k] for x in rounds[c]) for k in ("tok_s", "ttft_p50", "ttft_p95")} for c in rounds
    }
    for c in (False, True):
        m = med[c]
        print(
            f"capture {'on ' if c else 'off'}: {m['tok_s']:.1f} tok/s, TTFT p50 {m['ttft_p50']:.3f} s, "
            f"p95 {m['ttft_p95']:.3f} s  (errors {sum(x['errors'] for x in rounds[c])})"
        )
    print(
        f"on/off: throughput {med[True]['tok_s'] / med[False]['tok_s']:.3f}x, "
        f"TTFT p95 {med[True]['ttft_p95'] / med[False]['ttft_p95']:.3f}x"
    )
    print(f"store rows {stored} (expected {args.repeats * (args.requests + 4)}), rows with the planted email {leaked}")


if __name__ == "__main__":
    main()
