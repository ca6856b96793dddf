"""DPO + LoRA: tunewright vs TRL `DPOTrainer` + peft on the same model, pairs and hyper-parameters.

The model is SmolLM2-135M-Instruct (a real vocabulary of 49k tokens and a real chat template;
`--model DIR` takes another). The pairs are the embedded domain's questions with a context note
of 5-80 words; the chosen answer follows the escalation policy and the rejected one violates it,
written as conversational prompt / chosen / rejected message lists, which both tools read. Each
run is its own process, so the peak RSS is that tool's alone:

- `tunewright train` with `objective: dpo`, `adapter: lora` (r16/alpha32, all linear layers);
- TRL `DPOTrainer` with a peft `LoraConfig` of the same shape (reference: the adapter disabled).

Same loss (sigmoid, beta 0.1), learning rate, cosine schedule without warmup, AdamW, clipping 1.0,
pairs per step, steps, max length and seed, without gradient checkpointing (TRL's default turns
it on), no evaluation or checkpoints. `--precision` (default `auto`: bf16 where the device has
bf16 units, else fp32) is each tool's own spelling: TRL `bf16=True` (its default: autocast over
fp32 weights), tunewright `model.dtype=bfloat16` (its adapter stays fp32); on a CPU without
bf16 units both emulate bf16, many times slower than fp32. With `--reference precompute` (the
default) both score every pair with the reference once before training
(`dpo.precompute_ref_logps`, TRL's `precompute_ref_log_probs`); with `live` the reference pass
disables the adapter every step.
The rate counts the training loop plus the reference precompute (of every pair in the data:
one epoch by default). The losses (mean of the last 5 steps and of all steps) show both optimise
the same objective, but only statistically: each tool draws the pairs in its own order, so step
k is a different batch in each (the formulas are checked to 1e-6 in tests/unit/train).
With `--repeats N` each tool runs N times, alternating which goes first.

    python benchmarks/train_dpo.py --steps 12 --batch 4 --repeats 2 [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import child_run

HYPER = {"lr": 5e-4, "rank": 16, "alpha": 32, "warmup": 0, "max_length": 512, "seed": 42, "beta": 0.1}


def build_pairs(path: Path, n_pairs: int, seed: int) -> None:
    """Preference pairs of mixed lengths: the policy's answer against the same answer violating it."""
    from tunewright.core.io import read_jsonl_strict, write_jsonl
    from tunewright.demo import domain
    from tunewright.demo.sample_data import write_sample_data

    raw = write_sample_data(path.parent / "raw")
    words = " ".join(r["text"] for r in read_jsonl_strict(raw["handbook"])).split()
    rng = random.Random(seed)
    pairs = []
    for i in range(n_pairs):
        inc, table, question = rng.choice(domain.all_cases())
        note = " ".join(rng.choices(words, k=rng.randint(5, 80)))
        pairs.append(
            {
                "id": f"P{i}",
                "prompt": [{"role": "user", "content": f"{question} Context: {note}"}],
                "chosen": [{"role": "assistant", "content": domain.answer(inc, table)}],
                "rejected": [{"role": "assistant", "content": domain.violating_answer(inc, table)}],
            }
        )
    write_jsonl(path, pairs)


def run_tunewright(root: Path, model: Path, steps: int, batch: int, precompute: bool, run: int, precision: str) -> dict:
    from tunewright.cli.main import main
    from tunewright.core.workspace import init_workspace

    ws = root / f"ws-{run}"  # a fresh workspace: no reference log-probs cached by an earlier run
    init_workspace(ws)
    args = child_run.tunewright_args(ws, model, root / "pairs.jsonl", steps, batch, HYPER)
    args += ["objective=dpo", "adapter=lora", f"dpo.beta={HYPER['beta']}"]
    args += child_run.tunewright_precision(precision)
    if main([*args, f"dpo.precompute_ref_logps={str(precompute).lower()}"]) != 0:
        raise SystemExit("tunewright train failed")
    rows, results = child_run.latest_train(ws)
    return {
        "pairs": steps * batch,
        "seconds": results["seconds"],
        "precompute_seconds": results["reference"]["precompute_seconds"] or 0.0,
        "losses": [r["loss"] for r in rows if "loss" in r],
        "accuracy": [r["reward_accuracy"] for r in rows if "reward_accuracy" in r],
    }


def run_trl(root: Path, model: Path, steps: int, batch: int, precompute: bool, precision: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from tunewright.core.io import read_jsonl_strict

    precompute_seconds = [0.0]

    class TimedDPOTrainer(DPOTrainer):
        """TRL's trainer, timing its reference precompute (which runs in the constructor)."""

        def _precompute_ref_logps(self, *args, **kwargs):
            started = time.perf_counter()
            out = super()._precompute_ref_logps(*args, **kwargs)
            precompute_seconds[0] += time.perf_counter() - started
            return out

    rows = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in read_jsonl_strict(root / "pairs.jsonl")]
    config = DPOConfig(
        **child_run.trl_args(root, steps, batch, HYPER, precision),
        beta=HYPER["beta"],
        loss_type=["sigmoid"],
        precompute_ref_log_probs=precompute,
    )
    lora = LoraConfig(
        r=HYPER["rank"], lora_alpha=HYPER["alpha"], lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = TimedDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=lora,
    )
    out = trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "pairs": steps * batch,
        "seconds": out.metrics["train_runtime"],
        "precompute_seconds": precompute_seconds[0],
        "losses": [h["loss"] for h in logs],
        "accuracy": [h["rewards/accuracies"] for h in logs if "rewards/accuracies" in h],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 (SmolLM2-135M-Instruct) or a model directory")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=4, help="pairs per step")
    ap.add_argument("--pairs", type=int, help="pairs in the dataset (default: steps x batch, one epoch)")
    ap.add_argument("--reference", choices=["precompute", "live"], default="precompute")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool, alternating which goes first")
    ap.add_argument(
        "--precision",
        choices=child_run.PRECISIONS,
        default="auto",
        help=child_run.PRECISION_HELP,
    )
    ap.add_argument("--child", choices=["tunewright", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    precompute = args.reference == "precompute"
    args.pairs = args.pairs or args.steps * args.batch
    model = child_run.model_dir(args.model)
    precision = child_run.resolve_precision(args.precision)
    if args.child:
        if args.child == "tunewright":
            result = run_tunewright(args.root, model, args.steps, args.batch, precompute, args.run, precision)
        else:
            result = run_trl(args.root, model, args.steps, args.batch, precompute, precision)
        (args.root / f"{args.child}.json").write_text(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_pairs(root / "pairs.jsonl", args.pairs, HYPER["seed"])
        runs: dict[str, list[dict]] = {"tunewright": [], "trl": []}
        for repeat in range(args.repeats):
            # alternate the order so drift in the machine's speed does not favour one tool
            for tool in ("tunewright", "trl") if repeat % 2 == 0 else ("trl", "tunewright"):
                cmd = [sys.executable, __file__, "--child", tool, "--root", str(root), "--run", str(repeat)]
                cmd += ["--model", str(model), "--steps", str(args.steps), "--batch", str(args.batch)]
                cmd += ["--reference", args.reference, "--precision", precision]
                runs[tool].append(child_run.run_child(cmd, root / f"{tool}.json", tool))
    print(
        f"model: {model.name}, {args.pairs} pairs, {args.steps} steps of {args.batch} pairs, LoRA r{HYPER['rank']} "
        f"all-linear, sigmoid beta {HYPER['beta']}, lr {HYPER['lr']}, {precision}, reference {args.reference}, "
        f"on CPU ({os.cpu_count()} cores)"
    )
    rates, peaks = {}, {}
    for tool, results in runs.items():
        for i, r in enumerate(results, 1):
            last, every = r["losses"][-5:], r["losses"]
            seconds = r["seconds"] + r["precompute_seconds"]
            print(
                f"{tool:11} run {i} {r['pairs'] / seconds:6.2f} pairs/s  ({r['pairs']} pairs in {seconds:.1f} s, "
                f"of which reference precompute {r['precompute_seconds']:.1f} s)  peak RSS {r['rss_mib']:.0f} MiB  "
                f"loss: mean of last 5 steps {sum(last) / len(last):.4f}, of all {sum(every) / len(every):.4f}"
            )
        rates[tool] = sum(r["pairs"] for r in results) / sum(r["seconds"] + r["precompute_seconds"] for r in results)
        peaks[tool] = max(r["rss_mib"] for r in results)
    print(
        f"pairs/s over all runs: tunewright {rates['tunewright']:.2f}, TRL {rates['trl']:.2f}; "
        f"speed ratio tunewright / TRL: {rates['tunewright'] / rates['trl']:.2f}x; "
        f"peak RSS ratio: {peaks['tunewright'] / peaks['trl']:.2f}x"
    )


if __name__ == "__main__":
    main()
