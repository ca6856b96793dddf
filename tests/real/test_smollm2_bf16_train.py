"""A few training steps of SmolLM2 in bf16 weights and in mixed precision, beside float32.

The first step's loss is taken before any update, so it measures the forward's precision
alone: over 30 layers a bf16 forward moves a mean cross-entropy of ~2 nats by well under 2%.
Every run must keep the adapter in float32 (peft's fp32 adapter over bf16 weights; fp32
master weights under autocast) and save it loadable on the untouched base.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from tunewright.cli.main import main

pytestmark = pytest.mark.real

PRECISIONS = {
    "float32": [],
    "bf16 weights": ["model.dtype=bfloat16"],
    "mixed": ["training.mixed_precision=bfloat16"],
}


def newest_train(ws: Path) -> Path:
    return max((ws / "runs").glob("train-*"), key=lambda r: json.loads((r / "manifest.json").read_text())["started_at"])


def test_smollm2_trains_in_bf16_and_mixed_precision_as_float32_does(smol_workspace, tmp_path):
    ws = Path(shutil.copytree(smol_workspace, tmp_path / "ws", symlinks=True))
    small = ws / "data/splits/train-small.jsonl"
    small.write_text("".join((ws / "data/splits/train.jsonl").read_text().splitlines(keepends=True)[:4]))
    args = ["model.name_or_path=models/smollm2", "model.max_seq_length=96", "data.too_long=truncate"]
    args += [f"data.train_path={small}", "data.validation_path=null", "peft.rank=8", "peft.alpha=16"]
    args += ["training.max_steps=2", "training.micro_batch_size=2", "training.learning_rate=0.001"]
    args += ["training.warmup_ratio=0", "checkpoint.every=null"]
    first = {}
    for name, extra in PRECISIONS.items():
        assert main(["train", "-w", str(ws), *args, *extra]) == 0, name
        run = newest_train(ws)
        losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert len(losses) == 2 and all(math.isfinite(x) for x in losses), name
        first[name] = losses[0]
        with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as fh:
            assert {str(fh.get_slice(k).get_dtype()) for k in fh.keys()} == {"F32"}, name  # noqa: SIM118
    for name in ("bf16 weights", "mixed"):
        assert first[name] == pytest.approx(first["float32"], rel=0.02), name
