"""DPO on the real SmolLM2 (tied embeddings, 49k vocabulary, its own template), chained from its SFT run.

The reference is the SFT run's adapter, loaded a second time: the first step's loss must be
exactly log 2, a reference scored ahead must give the live reference's curve, and the DPO
adapter must load with plain peft on the untouched base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tunewright.cli.main import main

pytestmark = pytest.mark.real


def train_runs(ws: Path) -> list[Path]:
    def started(run: Path) -> str:
        return json.loads((run / "manifest.json").read_text())["started_at"]

    return sorted((ws / "runs").glob("train-*"), key=started)


def test_dpo_from_the_sft_run_precomputed_equals_live_and_loads_with_peft(smol_workspace, smollm2, tmp_path):
    ws = Path(shutil.copytree(smol_workspace, tmp_path / "ws", symlinks=True))
    (sft,) = train_runs(ws)
    pairs = ws / "data/splits/pairs-train.jsonl"
    small = ws / "data/splits/pairs-small.jsonl"
    small.write_text("".join(pairs.read_text().splitlines(keepends=True)[:8]))
    args = ["objective=dpo", "model.name_or_path=models/smollm2", "model.max_seq_length=256", "peft.rank=8"]
    args += ["peft.alpha=16", f"model.init_from={sft.name}", f"data.train_path={small}", "data.validation_path=null"]
    args += ["training.max_steps=3", "training.micro_batch_size=2", "training.learning_rate=0.0005"]
    args += ["training.warmup_ratio=0", "checkpoint.every=null", "dpo.rpo_alpha=1.0"]
    curves = {}
    for precompute in ("false", "true"):
        assert main(["train", "-w", str(ws), *args, f"dpo.precompute_ref_logps={precompute}"]) == 0
        run = train_runs(ws)[-1]
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["results"]["init_from"] == sft.name and sft.name in manifest["parents"]
        curves[precompute] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    live, pre = curves["false"], curves["true"]
    # step 1: the policy is its reference, so both rewards are zero
    assert live[0]["rewards_chosen"] == pytest.approx(0.0, abs=1e-4)
    assert live[0]["rewards_rejected"] == pytest.approx(0.0, abs=1e-4)
    for a, b in zip(pre, live, strict=True):
        for key in ("loss", "reward_margin", "logps_chosen"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-4), key
    adapter = train_runs(ws)[-1] / "adapter"
    assert (adapter / "adapter_model.safetensors").stat().st_size < 20_000_000  # no embeddings saved
    base = AutoModelForCausalLM.from_pretrained(smollm2)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        model = PeftModel.from_pretrained(base, adapter)
        after = model(input_ids=ids).logits
    assert after.shape[-1] == 49152 and torch.isfinite(after).all() and not torch.allclose(before, after)
