"""What shadow traffic costs production: `tunewright serve` at concurrency 32 with and without a shadow.

Both servers capture every request. With the shadow, a candidate LoRA adapter (rank 16 on the
attention projections, made here with peft; its B matrices start at zero, so it answers like the
base but does the adapter's work) answers a mirrored share of the requests, at most
`--max-inflight` at once. Rounds alternate over `--repeats` so a shared machine's drift hits both
alike; each sends `--requests` streaming chat requests of `--tokens` tokens at concurrency 32 and
records production's output tokens/s and TTFT. Prints the ratios shadow / no shadow and how many
shadow answers the store holds. `--pace 1` shows what an unpaced shadow costs.

    python benchmarks/serve_shadow.py --model smollm2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from child_run import cpu_name
from serve_capture import serve_round
from serve_load import model_dir

from tunewright.core.precision import fast_dtypes


def candidate_adapter(model: Path, out: Path) -> Path:
    """A rank-16 LoRA adapter of `model` on q/k/v/o (B = 0: the same answers, the adapter's cost)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    get_peft_model(base, lora).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model directory")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--share", type=float, default=1.0, help="shadow.share")
    ap.add_argument("--max-inflight", type=int, default=1, help="shadow.max_inflight")
    ap.add_argument("--pace", type=float, default=0.125, help="shadow.pace (1: the shadow advances every step)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: bf16 where the CPU computes it fast)")
    args = ap.parse_args()
    args.engine = "tunewright"
    args.dtype = args.dtype or ("bfloat16" if "bfloat16" in fast_dtypes("cpu") else "float32")
    with tempfile.TemporaryDirectory() as tmp:
        model = model_dir(args.model, Path(tmp)).resolve()
        adapter = candidate_adapter(model, Path(tmp) / "candidate")
        ws = Path(tmp) / "ws"
        ws.mkdir()
        common = (f"adapters={{candidate: {adapter}}}",)
        shadow = (
            *common,
            "shadow.candidate=candidate",
            f"shadow.share={args.share}",
            f"shadow.max_inflight={args.max_inflight}",
            f"shadow.pace={args.pace}",
        )
        rounds: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(args.repeats):
            for on in (False, True) if r % 2 == 0 else (True, False):
                rounds[on].append(serve_round(model, ws, True, args, shadow if on else common))
                print(f"round {r} shadow={on}: {rounds[on][-1]}", flush=True)
        from tunewright.core import capture_store as store

        conn = store.connect(ws / "monitor" / "capture.sqlite", readonly=True)
        shadows = conn.execute("SELECT count(*) FROM requests WHERE route = 'chat.completions.shadow'").fetchone()[0]
    print(
        f"\nmodel {args.model}, {args.dtype}, {args.threads} threads, CPU {cpu_name()}; concurrency 32, "
        f"{args.requests} requests x {args.tokens} tokens, {args.repeats} rounds each; shadow share {args.share}, "
        f"max_inflight {args.max_inflight}, pace {args.pace}"
    )
    keys = ("tok_s", "ttft_p50", "ttft_p95")
    med = {on: {k: statistics.median(x[k] for x in rounds[on]) for k in keys} for on in rounds}
    for on in (False, True):
        m = med[on]
        print(
            f"shadow {'on ' if on else 'off'}: {m['tok_s']:.1f} tok/s, TTFT p50 {m['ttft_p50']:.3f} s, "
            f"p95 {m['ttft_p95']:.3f} s  (errors {sum(x['errors'] for x in rounds[on])})"
        )
    print(
        f"on/off: throughput {med[True]['tok_s'] / med[False]['tok_s']:.3f}x, "
        f"TTFT p95 {med[True]['ttft_p95'] / med[False]['ttft_p95']:.3f}x; shadow answers stored {shadows}"
    )


if __name__ == "__main__":
    main()
