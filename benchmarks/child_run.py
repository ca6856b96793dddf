"""Shared by the training benchmarks: one side per process (its own peak RSS), TRL's common settings."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def run_child(cmd: list[str], result: Path, name: str) -> dict:
    """Run `cmd`, which writes its figures to `result` as JSON; add its peak RSS (MiB) to them."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    return {**json.loads(result.read_text()), "rss_mib": usage.ru_maxrss / 1024}


def trl_args(root: Path, steps: int, batch: int, hyper: dict) -> dict:
    """The TrainingArguments both TRL trainers get: the same optimiser, schedule and precision as tunewright."""
    import torch

    return {
        "output_dir": str(root / "trl"),
        "max_steps": steps,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "learning_rate": hyper["lr"],
        "lr_scheduler_type": "cosine",
        "warmup_steps": hyper["warmup"],
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "optim": "adamw_torch",
        "max_length": hyper["max_length"],
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "bf16": False,  # TRL defaults to bf16 autocast and gradient checkpointing; match tunewright's fp32 run
        "gradient_checkpointing": False,
        "dataloader_num_workers": 0,
        "seed": hyper["seed"],
        "disable_tqdm": True,
    }


def tunewright_args(ws: Path, model: Path, data: Path, steps: int, batch: int, hyper: dict) -> list[str]:
    """`tunewright train` with the settings both training benchmarks give TRL too (LoRA, schedule, seed)."""
    return [
        "train",
        "-w",
        str(ws),
        f"model.name_or_path={model}",
        f"model.max_seq_length={hyper['max_length']}",
        f"data.train_path={data}",
        "data.validation_path=null",
        "data.too_long=truncate",
        f"peft.rank={hyper['rank']}",
        f"peft.alpha={hyper['alpha']}",
        f"training.learning_rate={hyper['lr']}",
        f"training.max_steps={steps}",
        f"training.micro_batch_size={batch}",
        f"training.warmup_ratio={hyper['warmup'] / steps}",
        f"training.seed={hyper['seed']}",
        "checkpoint.every=null",
    ]


def latest_train(ws: Path) -> tuple[list[dict], dict]:
    """The newest training run of `ws`: its metric rows and its manifest's results."""
    run = sorted((ws / "runs").glob("train-*"))[-1]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return rows, json.loads((run / "manifest.json").read_text())["results"]
