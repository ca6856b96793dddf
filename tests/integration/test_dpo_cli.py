"""DPO through the CLI: chained from an SFT run, resumed after a kill, and its bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunewright.cli.main import main
from tunewright.core.kernel_caches import VARIABLES, step_capacity
from tunewright.demo import domain

PAIRS = ["data.train_path=data/splits/pairs-train.jsonl", "data.validation_path=data/splits/pairs-validation.jsonl"]
DPO = [
    "objective=dpo",
    *PAIRS,
    "training.learning_rate=0.001",
    "training.micro_batch_size=4",
    "training.warmup_ratio=0",
]


def write_pairs(ws: Path) -> None:
    """Answers that follow the escalation policy (chosen) and the same answers violating it (rejected)."""
    cases = domain.all_cases()[::4]
    for split, part in (("train", cases[:48]), ("validation", cases[48:64])):
        with (ws / f"data/splits/pairs-{split}.jsonl").open("w") as fh:
            for k, (inc, table, prompt) in enumerate(part):
                pair = {
                    "id": f"{split}-{k}",
                    "prompt": [
                        {"role": "system", "content": domain.SYSTEM_PROMPT},
                        {"role": "user", "content": prompt},
                    ],
                    "chosen": domain.answer(inc, table),
                    "rejected": domain.violating_answer(inc, table),
                }
                fh.write(json.dumps(pair) + "\n")


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def latest_run(ws: Path) -> Path:
    return sorted((ws / "runs").glob("train-*"), key=lambda p: p.stat().st_mtime)[-1]


@pytest.fixture(scope="module")
def sft(tmp_path_factory, quickstart_run) -> tuple[Path, str]:
    """A copy of the quickstart's workspace (a well-trained SFT run) with preference splits added."""
    ws = Path(shutil.copytree(quickstart_run[0], tmp_path_factory.mktemp("dpo") / "ws", symlinks=True))
    write_pairs(ws)
    return ws, latest_run(ws).name


def test_dpo_chained_from_sft_raises_reward_accuracy_and_records_its_parent(sft, monkeypatch):
    ws, sft_run = sft
    args = [*DPO, f"model.init_from={sft_run}", "training.max_steps=24", "training.eval_every=12"]
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert main(["train", "-w", str(ws), *args, "checkpoint.every=null"]) == 0
    assert all(os.environ[name] == str(step_capacity(8)) for name in VARIABLES)  # 4 pairs: 8 answers a step
    run = latest_run(ws)
    manifest = json.loads((run / "manifest.json").read_text())
    assert sft_run in manifest["parents"] and manifest["results"]["init_from"] == sft_run
    assert manifest["results"]["objective"] == "dpo" and manifest["results"]["reference"]["kind"] == "reference_adapter"
    evals = [r for r in rows(run) if "val_loss" in r]
    assert evals[0]["val_loss"] == pytest.approx(0.693147, abs=1e-5)  # the reference is the SFT model
    assert evals[-1]["val_reward_accuracy"] > 0.8 and evals[-1]["val_loss"] < evals[0]["val_loss"]
    steps = [r for r in rows(run) if "loss" in r]
    assert {"rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "logps_chosen"} <= set(steps[0])
    assert sorted(p.name for p in (run / "adapter").iterdir() if p.is_dir()) == []  # the reference is not saved


def test_resume_after_a_killed_dpo_run_reproduces_its_loss_curve(sft):
    from test_training import killed_after

    ws, sft_run = sft
    args = [*DPO, f"model.init_from={sft_run}", "training.max_steps=12", "training.eval_every=6", "checkpoint.every=3"]
    assert main(["train", "-w", str(ws), *args]) == 0
    reference = rows(latest_run(ws))
    checkpoint = killed_after(ws, [*args, "checkpoint.keep_last=10"], "*/step-000003")
    assert main(["train", "-w", str(ws), *args, "--resume", str(checkpoint)]) == 0
    resumed = rows(latest_run(ws))
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    for a, b in zip(resumed, reference, strict=True):
        for key in ("loss", "val_loss", "reward_accuracy", "val_reward_margin"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key


def test_dpo_with_dora_from_the_base_disables_the_adapter_for_the_reference(sft):
    ws, _ = sft
    args = [*DPO, "adapter=dora", "training.max_steps=4", "training.eval_every=4", "checkpoint.every=null"]
    assert main(["train", "-w", str(ws), *args]) == 0
    run = latest_run(ws)
    results = json.loads((run / "manifest.json").read_text())["results"]
    assert results["adapter"] == "dora" and results["reference"]["kind"] == "disabled"
    assert json.loads((run / "adapter/adapter_config.json").read_text())["use_dora"] is True
    steps = [r for r in rows(run) if "loss" in r]
    assert steps[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # the policy starts as its reference
    assert steps[-1]["reward_margin"] != 0.0


def test_full_fine_tune_with_a_precomputed_reference_matches_a_frozen_copy(sft):
    ws, _ = sft
    args = [*DPO, "adapter=none", "training.max_steps=4", "training.eval_every=2", "checkpoint.every=null"]
    curves = {}
    for setting, kind in (("dpo.precompute_ref_logps=true", "initial"), ("dpo.reference_copy=true", "copy")):
        assert main(["train", "-w", str(ws), *args, setting, "training.learning_rate=0.0005"]) == 0
        run = latest_run(ws)
        results = json.loads((run / "manifest.json").read_text())["results"]
        assert results["adapter"] == "none" and results["reference"]["kind"] == kind
        assert (run / "model" / "model.safetensors").is_file()
        curves[kind] = rows(run)
    first = next(r for r in curves["initial"] if "loss" in r)
    assert first["loss"] == pytest.approx(0.693147, abs=1e-5)
    for a, b in zip(curves["initial"], curves["copy"], strict=True):
        for key in ("loss", "reward_margin", "val_loss", "val_reward_margin"):
            if key in b:  # the same numbers up to fp32 summation order (scored ahead vs by the copy)
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_torchrun_two_processes_match_one_process(sft, strategy):
    ws, sft_run = sft
    common = [*DPO, f"model.init_from={sft_run}", "training.max_steps=4", "training.eval_every=2"]
    common += [f"distributed.strategy={strategy}", "checkpoint.every=null", "dpo.rpo_alpha=1.0"]
    assert main(["train", "-w", str(ws), *common]) == 0
    from test_training import torchrun_train

    single = rows(latest_run(ws))
    double = torchrun_train(ws, [*common, "training.micro_batch_size=2"])
    assert [r["step"] for r in double] == [r["step"] for r in single]
    for a, b in zip(double, single, strict=True):
        for key in ("loss", "reward_margin", "reward_accuracy", "val_loss", "val_reward_margin"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert (latest_run(ws) / "adapter" / "adapter_model.safetensors").is_file()


def test_bad_dpo_inputs_are_clear_errors(sft, capsys):
    ws, sft_run = sft
    w = ["-w", str(ws)]
    assert main(["train", *w, "objective=dpo", "training.max_steps=1"]) == 2  # the SFT splits: conversations
    assert "a conversation, not a preference pair" in capsys.readouterr().err
    shutil.copytree(ws / "models/tiny-base", ws / "models/other-base", dirs_exist_ok=True)
    other = [*DPO, "model.name_or_path=models/other-base", f"model.init_from={sft_run}", "training.max_steps=1"]
    assert main(["train", *w, *other]) == 2
    assert f"run {sft_run} was trained on models/tiny-base, not on models/other-base" in capsys.readouterr().err
    full = [*DPO, "adapter=none", "dpo.precompute_ref_logps=true", f"model.init_from={sft_run}"]
    assert main(["train", *w, *full, "training.max_steps=1"]) == 2
    assert "trained an adapter; continue it with adapter: lora" in capsys.readouterr().err
    bad = ws / "data/splits/pairs-bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    assert main(["train", *w, *DPO, f"data.train_path={bad}", "training.max_steps=1"]) == 2
    assert "pairs-bad.jsonl:1: chosen and rejected are the same answer" in capsys.readouterr().err


def test_quickstart_with_dpo_is_preferred_on_held_out_pairs_and_keeps_the_sft_gates(tmp_path):
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "tunewright", "quickstart", "--with-dpo", "--workspace", str(ws)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reports/eval-dpo.md" in proc.stdout and "reports/eval-preferences.md" in proc.stdout
    trains = sorted((ws / "runs").glob("train-*"))
    assert len(trains) == 2
    sft_run, dpo_run = (json.loads((run / "manifest.json").read_text()) for run in trains)
    assert dpo_run["results"]["objective"] == "dpo" and dpo_run["results"]["init_from"] == sft_run["run_id"]
    evals = [json.loads(p.read_text()) for p in sorted((ws / "runs").glob("eval-*/eval.json"))]
    _, sft_gates, preferences = evals
    assert sft_gates["models"]["model"]["run"] == dpo_run["run_id"] and sft_gates["verdict"] == "GO"
    assert preferences["models"]["baseline"]["run"] == sft_run["run_id"] and preferences["verdict"] == "GO"
    metrics = {m["name"]: m for m in preferences["tasks"][0]["metrics"]}
    accuracy, margin = metrics["preference_accuracy"], metrics["preference_margin"]
    assert accuracy["model"]["value"] >= max(0.9, accuracy["baseline"]["value"])  # the SFT model may rank all right
    assert margin["model"]["value"] > margin["baseline"]["value"]  # and DPO then widens the margin
    assert "Verdict: GO" in (ws / "reports/eval-dpo.md").read_text()
