"""LoRA SFT: tunewright vs TRL `SFTTrainer` + peft on the same model, data and hyper-parameters.

Builds a ~26M-parameter Llama (8 layers, hidden 512, the embedded BPE tokenizer; random
init, saved once so both tools load the same weights) and N instruction pairs of mixed
lengths (the embedded domain's questions with notes of 5-150 words). Then runs, one after
the other, each in its own process so peak RSS is per tool:

- `tunewright train` (LoRA r16/alpha32 on all linear layers, assistant-only loss);
- TRL `SFTTrainer` with a peft `LoraConfig` of the same shape, on the same pairs given as a
  conversational prompt/completion dataset (so its loss is on the completion only).

Same learning rate, cosine schedule with the same warmup, AdamW, grad clipping 1.0, batch
size, steps, max length and seed, fp32 without gradient checkpointing (TRL's own defaults
turn on bf16 autocast and gradient checkpointing, which on a CPU without bf16 matrix units
makes it many times slower; we do not count that); no evaluation or checkpoints inside the timed loop. It
reports real (non-pad) tokens/s of the training loop, peak RSS, the mean loss of the last 5
steps for each, and the speed ratio. With `--repeats N` each tool runs N times, alternating
which goes first, and the ratio is of tokens/s over all runs (a shared machine's speed
can drift by 10% between runs).

    python benchmarks/train_lora.py --steps 40 --batch 8 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import child_run

HYPER = {"lr": 1e-3, "rank": 16, "alpha": 32, "warmup": 4, "max_length": 512, "seed": 42}


def build(root: Path, n_pairs: int, seed: int) -> int:
    """The shared base model and the shared instruction pairs; returns the model's parameter count."""
    from tunewright.core.io import read_jsonl_strict, write_jsonl
    from tunewright.demo import domain
    from tunewright.demo.sample_data import write_sample_data
    from tunewright.demo.tiny_model import build_model, build_tokenizer

    raw = write_sample_data(root / "raw")
    handbook = [r["text"] for r in read_jsonl_strict(raw["handbook"])]
    tokenizer = build_tokenizer(handbook)
    model = build_model(
        tokenizer,
        seed,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    rng = random.Random(seed)
    words = " ".join(handbook).split()
    pairs = []
    for i in range(n_pairs):
        inc, table, prompt = rng.choice(domain.all_cases())
        note = " ".join(rng.choices(words, k=rng.randint(5, 150)))
        pairs.append({"id": f"P{i}", "prompt": f"{prompt} Context: {note}", "response": domain.answer(inc, table)})
    write_jsonl(root / "pairs.jsonl", pairs)
    return sum(p.numel() for p in model.parameters())


def run_tunewright(root: Path, steps: int, batch: int, overrides: list[str]) -> dict:
    from tunewright.cli.main import main
    from tunewright.core.workspace import init_workspace

    ws = root / "ws"
    init_workspace(ws)
    args = child_run.tunewright_args(ws, root / "model", root / "pairs.jsonl", steps, batch, HYPER)
    if main([*args, *overrides]) != 0:
        raise SystemExit("tunewright train failed")
    rows, results = child_run.latest_train(ws)
    losses = [r["loss"] for r in rows if "loss" in r]
    seconds = results["seconds"]
    return {"tokens": rows[-1]["tokens"], "seconds": seconds, "losses": losses}


def run_trl(root: Path, steps: int, batch: int) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from tunewright.core.io import read_jsonl_strict

    pairs = read_jsonl_strict(root / "pairs.jsonl")
    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "completion": [{"role": "assistant", "content": p["response"]}],
        }
        for p in pairs
    ]
    data = Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model")
    args = SFTConfig(
        **child_run.trl_args(root, steps, batch, HYPER),
        packing=False,
        include_num_input_tokens_seen="non_padding",
    )
    lora = LoraConfig(
        r=HYPER["rank"], lora_alpha=HYPER["alpha"], lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    out = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens": trainer.state.num_input_tokens_seen, "seconds": out.metrics["train_runtime"], "losses": losses}


def child(tool: str, root: Path, steps: int, batch: int, overrides: list[str]) -> None:
    result = run_tunewright(root, steps, batch, overrides) if tool == "tunewright" else run_trl(root, steps, batch)
    (root / f"{tool}.json").write_text(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool, alternating which goes first")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra tunewright config override, e.g. training.speedups=false (repeatable)",
    )
    ap.add_argument(
        "--peak-tflops", type=float, default=67.0, help="the device's fp32 peak for MFU (GPU only; H100/H200 SXM: 67)"
    )
    ap.add_argument("--child", choices=["tunewright", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.root, args.steps, args.batch, args.set)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_params = build(root, args.pairs, HYPER["seed"])
        runs: dict[str, list[dict]] = {"tunewright": [], "trl": []}
        for repeat in range(args.repeats):
            # alternate the order so drift in the machine's speed does not favour one tool
            for tool in ("tunewright", "trl") if repeat % 2 == 0 else ("trl", "tunewright"):
                runs[tool].append(run_child(tool, root, args.steps, args.batch, args.set))
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    # forward (2N) + input gradients (2N) per token: LoRA computes no gradients for the frozen base weights
    flops_per_token = 4 * n_params
    print(
        f"model: Llama 8 x 512 ({n_params / 1e6:.1f}M parameters), {args.pairs} pairs, "
        f"{args.steps} steps of batch {args.batch}, "
        f"LoRA r{HYPER['rank']} all-linear, lr {HYPER['lr']}, fp32, on {gpu or f'CPU ({os.cpu_count()} cores)'}"
        + (f"; tunewright with {' '.join(args.set)}" if args.set else "")
    )
    rates = {}
    for tool, results in runs.items():
        for i, r in enumerate(results, 1):
            last = r["losses"][-5:]
            rate = r["tokens"] / r["seconds"]
            mfu = f"  MFU {rate * flops_per_token / (args.peak_tflops * 1e12):.2%}" if gpu else ""
            print(
                f"{tool:11} run {i} {rate:8.0f} tokens/s  ({r['tokens']} tokens in {r['seconds']:.1f} s)  "
                f"peak RSS {r['rss_mib']:.0f} MiB  final loss (mean of last 5 steps) {sum(last) / len(last):.4f}{mfu}"
            )
        rates[tool] = sum(r["tokens"] for r in results) / sum(r["seconds"] for r in results)
    print(
        f"tokens/s over all runs: tunewright {rates['tunewright']:.0f}, TRL {rates['trl']:.0f}; "
        f"speed ratio tunewright / TRL: {rates['tunewright'] / rates['trl']:.2f}x"
    )


def run_child(tool: str, root: Path, steps: int, batch: int, overrides: list[str]) -> dict:
    """One training run of `tool` in its own process (so its peak RSS is its own)."""
    cmd = [sys.executable, __file__, "--child", tool, "--root", str(root), "--steps", str(steps), "--batch", str(batch)]
    cmd += [f"--set={o}" for o in overrides]
    return child_run.run_child(cmd, root / f"{tool}.json", tool)


if __name__ == "__main__":
    main()
