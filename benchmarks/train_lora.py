"""LoRA SFT: tunewright vs TRL `SFTTrainer` + peft on the same model, data and hyper-parameters.

Builds a ~26M-parameter Llama (8 layers, hidden 512, the embedded BPE tokenizer; random
init, saved once so both tools load the same weights), or takes `--model smollm2`
(SmolLM2-135M-Instruct) or a model directory, and N instruction pairs of mixed lengths (the
embedded domain's questions with notes of 5-150 words). Then runs, one after
the other, each in its own process so peak RSS is per tool:

- `tunewright train` (LoRA r16/alpha32 on all linear layers, assistant-only loss);
- TRL `SFTTrainer` with a peft `LoraConfig` of the same shape, on the same pairs given as a
  conversational prompt/completion dataset (so its loss is on the completion only).

Same learning rate, cosine schedule with the same warmup, AdamW, grad clipping 1.0, batch
size, steps, max length and seed, without gradient checkpointing (TRL's default turns it on);
no evaluation or checkpoints inside the timed loop. `--precision` (default `auto`: bf16 where
the device has bf16 units, else fp32) is each tool's own spelling: TRL `bf16=True` (its
default: autocast over fp32 weights), tunewright `model.dtype=bfloat16` (its adapter stays
fp32). On a CPU without bf16 units both emulate bf16, many times slower than fp32. It
reports real (non-pad) tokens/s of the training loop, peak RSS, the mean loss of the last 5
steps for each, and the speed ratio. With `--repeats N` each tool runs N times, alternating
which goes first, and the ratio is of tokens/s over all runs (a shared machine's speed
can drift by 10% between runs).

    python benchmarks/train_lora.py --steps 40 --batch 8 --repeats 2 [--model smollm2] [--precision bf16]
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


def build(root: Path, n_pairs: int, seed: int, model: str = "tiny") -> tuple[Path, str, int]:
    """The shared instruction pairs and base model (`tiny`: built here; else `child_run.model_dir`);
    returns the model's directory, a description and its parameter count."""
    from tunewright.core.io import read_jsonl_strict, write_jsonl
    from tunewright.demo import domain
    from tunewright.demo.sample_data import write_sample_data

    raw = write_sample_data(root / "raw")
    handbook = [r["text"] for r in read_jsonl_strict(raw["handbook"])]
    rng = random.Random(seed)
    words = " ".join(handbook).split()
    pairs = []
    for i in range(n_pairs):
        inc, table, prompt = rng.choice(domain.all_cases())
        note = " ".join(rng.choices(words, k=rng.randint(5, 150)))
        pairs.append({"id": f"P{i}", "prompt": f"{prompt} Context: {note}", "response": domain.answer(inc, table)})
    write_jsonl(root / "pairs.jsonl", pairs)
    if model != "tiny":
        where = child_run.model_dir(model)
        config = json.loads((where / "config.json").read_text())
        n_params = params_of(config)
        shape = f"{config['num_hidden_layers']} x {config['hidden_size']}"
        return where, f"{where.name} ({shape}, {n_params / 1e6:.0f}M parameters)", n_params
    return build_tiny(root, handbook, seed)


def params_of(config: dict) -> int:
    """A Llama-shaped model's parameter count from its config (embeddings, layers, head when untied)."""
    h, i, layers, vocab = (config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"))
    kv = h // config["num_attention_heads"] * config.get("num_key_value_heads", config["num_attention_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return vocab * h * (1 if config.get("tie_word_embeddings") else 2) + layers * per_layer + h


def build_tiny(root: Path, handbook: list[str], seed: int) -> tuple[Path, str, int]:
    """The ~26M-parameter Llama, random init, saved once so both tools load the same weights."""
    from tunewright.demo.tiny_model import build_model, build_tokenizer

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
    n_params = sum(p.numel() for p in model.parameters())
    return root / "model", f"Llama 8 x 512 ({n_params / 1e6:.1f}M parameters)", n_params


def run_tunewright(root: Path, model: Path, steps: int, batch: int, precision: str, overrides: list[str]) -> dict:
    from tunewright.cli.main import main
    from tunewright.core.workspace import init_workspace

    ws = root / "ws"
    init_workspace(ws)
    args = child_run.tunewright_args(ws, model, root / "pairs.jsonl", steps, batch, HYPER)
    if main([*args, *child_run.tunewright_precision(precision), *overrides]) != 0:
        raise SystemExit("tunewright train failed")
    rows, results = child_run.latest_train(ws)
    losses = [r["loss"] for r in rows if "loss" in r]
    seconds = results["seconds"]
    return {"tokens": rows[-1]["tokens"], "seconds": seconds, "losses": losses}


def run_trl(root: Path, model_path: Path, steps: int, batch: int, precision: str) -> dict:
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
    import torch

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    args = SFTConfig(
        **child_run.trl_args(root, steps, batch, HYPER, precision),
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


def child(tool: str, root: Path, model: Path, steps: int, batch: int, precision: str, overrides: list[str]) -> None:
    if tool == "tunewright":
        result = run_tunewright(root, model, steps, batch, precision, overrides)
    else:
        result = run_trl(root, model, steps, batch, precision)
    (root / f"{tool}.json").write_text(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool, alternating which goes first")
    ap.add_argument("--model", default="tiny", help="tiny (a 26M Llama built here), smollm2 or a model directory")
    ap.add_argument(
        "--precision",
        choices=child_run.PRECISIONS,
        default="auto",
        help=child_run.PRECISION_HELP,
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra tunewright config override, e.g. training.speedups=false (repeatable)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        help="dense peak TFLOPS at the run precision for MFU (GPU only; default H100/H200 SXM: fp32 67, bf16 989)",
    )
    ap.add_argument("--child", choices=["tunewright", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    precision = child_run.resolve_precision(args.precision)
    if args.child:
        child(args.child, args.root, Path(args.model), args.steps, args.batch, precision, args.set)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, described, n_params = build(root, args.pairs, HYPER["seed"], args.model)
        runs: dict[str, list[dict]] = {"tunewright": [], "trl": []}
        for repeat in range(args.repeats):
            # alternate the order so drift in the machine's speed does not favour one tool
            for tool in ("tunewright", "trl") if repeat % 2 == 0 else ("trl", "tunewright"):
                runs[tool].append(run_child(tool, root, model, args.steps, args.batch, precision, args.set))
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    # forward (2N) + input gradients (2N) per token: LoRA computes no gradients for the frozen base weights
    flops_per_token = 4 * n_params
    peak_tflops = args.peak_tflops or (989.0 if precision == "bf16" else 67.0)
    print(
        f"model: {described}, {args.pairs} pairs, {args.steps} steps of batch {args.batch}, "
        f"LoRA r{HYPER['rank']} all-linear, lr {HYPER['lr']}, {precision}, on {gpu or f'CPU ({os.cpu_count()} cores)'}"
        + (f"; tunewright with {' '.join(args.set)}" if args.set else "")
    )
    rates, peaks = {}, {}
    for tool, results in runs.items():
        for i, r in enumerate(results, 1):
            last = r["losses"][-5:]
            rate = r["tokens"] / r["seconds"]
            mfu = f"  MFU {rate * flops_per_token / (peak_tflops * 1e12):.2%}" if gpu else ""
            print(
                f"{tool:11} run {i} {rate:8.0f} tokens/s  ({r['tokens']} tokens in {r['seconds']:.1f} s)  "
                f"peak RSS {r['rss_mib']:.0f} MiB  final loss (mean of last 5 steps) {sum(last) / len(last):.4f}{mfu}"
            )
        rates[tool] = sum(r["tokens"] for r in results) / sum(r["seconds"] for r in results)
        peaks[tool] = max(r["rss_mib"] for r in results)
    print(
        f"tokens/s over all runs: tunewright {rates['tunewright']:.0f}, TRL {rates['trl']:.0f}; "
        f"speed ratio tunewright / TRL: {rates['tunewright'] / rates['trl']:.2f}x; "
        f"peak RSS ratio: {peaks['tunewright'] / peaks['trl']:.2f}x"
    )


def run_child(tool: str, root: Path, model: Path, steps: int, batch: int, precision: str, overrides: list[str]) -> dict:
    """One training run of `tool` in its own process (so its peak RSS is its own)."""
    cmd = [sys.executable, __file__, "--child", tool, "--root", str(root), "--steps", str(steps), "--batch", str(batch)]
    cmd += ["--model", str(model), "--precision", precision]
    cmd += [f"--set={o}" for o in overrides]
    return child_run.run_child(cmd, root / f"{tool}.json", tool)


if __name__ == "__main__":
    main()
