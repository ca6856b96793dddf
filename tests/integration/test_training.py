"""The training lane end to end through the CLI: resume after a kill, SIGTERM, torchrun, tasks."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunewright.cli.main import main
from tunewright.core.model_source import resolve_model

SHORT = ["training.max_steps=30", "training.eval_every=10", "training.micro_batch_size=4", "checkpoint.every=5"]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def latest_run(ws: Path) -> Path:
    return sorted((ws / "runs").glob("train-*"), key=lambda p: p.stat().st_mtime)[-1]


def start_cli(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, "-m", "tunewright", "train", "-w", str(ws), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(pattern: str, ws: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted((ws / "checkpoints").glob(pattern))
        if found and (found[-1] / "state.json").is_file():
            return found[-1]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no {pattern} within {timeout} s")


@pytest.fixture
def curated(model_workspace: Path) -> Path:
    assert main(["curate", "-w", str(model_workspace)]) == 0
    return model_workspace


def killed_after(ws: Path, args: list[str], checkpoint: str) -> Path:
    """Start `tunewright train`, SIGKILL it once `checkpoint` is complete; that checkpoint."""
    proc = start_cli(ws, *args)
    found = wait_for(checkpoint, ws, proc)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return found


def test_resume_after_a_killed_run_reproduces_the_loss_curve(curated):
    ws = curated
    assert main(["train", "-w", str(ws), *SHORT]) == 0
    reference = rows(latest_run(ws))
    checkpoint = killed_after(ws, [*SHORT, "checkpoint.keep_last=10"], "*/step-000005")
    assert main(["train", "-w", str(ws), *SHORT, "--resume", str(checkpoint)]) == 0
    resumed = rows(latest_run(ws))
    assert [r["step"] for r in resumed] == [r["step"] for r in reference]
    for a, b in zip(resumed, reference, strict=True):
        for key in ("loss", "val_loss", "lr"):
            assert (key in a) == (key in b)
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9)
    manifest = json.loads((latest_run(ws) / "manifest.json").read_text())
    assert manifest["results"]["resumed_from"] == str(checkpoint)


@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C (SIGINT)")]
)
def test_a_stop_signal_saves_a_checkpoint_says_how_to_resume_and_exits(curated, signum, code, name):
    ws = curated
    proc = start_cli(ws, *SHORT, "training.max_steps=400", env={"TUNEWRIGHT_PROGRESS_EVERY": "0"})
    wait_for("*/step-000005", ws, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"stopped by {name} at step" in err and "continue with: tunewright train --resume" in err
    assert "Traceback" not in err
    step = int(err.split(f"stopped by {name} at step ")[1].split(";")[0])
    saved = next((ws / "checkpoints").glob(f"*/step-{step:06d}"))
    assert json.loads((saved / "state.json").read_text())["step"] == step
    assert not list((ws / "runs").glob("train-*")), "an interrupted run is not promoted to runs/"
    # stderr is a pipe here, so progress came as plain lines, one per step with the interval at 0
    assert "training: started (400 to do)" in err
    assert f"training: {step}/400" in err and "(stopped)" in err


def test_resume_from_a_checkpoint_of_another_config_is_refused(curated, capsys):
    ws = curated
    assert main(["train", "-w", str(ws), *SHORT, "training.max_steps=5"]) == 0
    capsys.readouterr()
    code = main(
        ["train", "-w", str(ws), *SHORT, "training.max_steps=5", "training.learning_rate=0.1", "--resume", "latest"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "was made with another config: training.learning_rate (0.004 in the checkpoint, 0.1 now)" in err


def torchrun_train(ws: Path, args: list[str]) -> list[dict]:
    """`tunewright train` under torchrun with two processes; the run's metric rows."""
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc-per-node", "2", "-m", "tunewright", "train", "-w", str(ws), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return rows(latest_run(ws))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_torchrun_two_processes_match_one_process(curated, strategy):
    ws = curated
    common = ["training.max_steps=4", "training.eval_every=2", f"distributed.strategy={strategy}"]
    assert main(["train", "-w", str(ws), *common, "training.micro_batch_size=4"]) == 0
    single = rows(latest_run(ws))
    double = torchrun_train(ws, [*common, "training.micro_batch_size=2"])
    assert [r["step"] for r in double] == [r["step"] for r in single]
    for a, b in zip(double, single, strict=True):
        key = "loss" if "loss" in a else "val_loss"
        assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert (latest_run(ws) / "adapter" / "adapter_model.safetensors").is_file()


def test_check_data_shows_trained_tokens_and_trains_nothing(curated, capsys):
    ws = curated
    assert main(["train", "-w", str(ws), "--check-data"]) == 0
    out = capsys.readouterr().out
    assert "Trained tokens are shown inside ⟦ ⟧" in out
    assert "<|im_start|>assistant\n⟦" in out and "<|im_end|>⟧" in out
    assert not list((ws / "runs").glob("train-*"))


def test_too_long_examples_are_counted_in_the_manifest(curated):
    ws = curated
    for mode, key in (("drop", "dropped_too_long"), ("truncate", "truncated")):
        args = ["training.max_steps=2", "model.max_seq_length=72", f"data.too_long={mode}"]
        assert main(["train", "-w", str(ws), *args]) == 0
        results = json.loads((latest_run(ws) / "manifest.json").read_text())["results"]
        assert results[key] > 0


def test_no_assistant_turn_is_a_clear_error(curated, capsys):
    ws = curated
    train = ws / "data/splits/train.jsonl"
    with train.open("a") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "is the ledger stale?"}]}) + "\n")
    n = len(train.read_text().splitlines())
    assert main(["train", "-w", str(ws), "training.max_steps=1"]) == 2
    assert f"{train}:{n}: conversation has no assistant turn" in capsys.readouterr().err


def test_full_fine_tune_on_documents_and_outputs(curated):
    ws = curated
    args = ["adapter=none", "task=pretrain", "data.train_path=data/raw/handbook.jsonl", "data.validation_path=null"]
    assert main(["train", "-w", str(ws), *args, "training.max_steps=3", "data.packing=true"]) == 0
    run = latest_run(ws)
    assert (run / "model" / "config.json").is_file() and (run / "model" / "tokenizer.json").is_file()
    assert (run / "loss-curve.svg").read_text().startswith("<svg")
    results = json.loads((run / "manifest.json").read_text())["results"]
    assert results["packed_rows"] < results["train_examples"]
    assert set(results["data_sha256"]) == {"handbook.jsonl"}
    source = resolve_model(ws, "latest:train")
    assert source.adapter is None and resolve_model(ws, "base", base_of=source).base == str(ws / "models/tiny-base")
    assert main(["export", "latest:train", "--format", "adapter", "-w", str(ws)]) == 2
    assert main(["export", "latest:train", "--format", "merged", "--name", "full", "-w", str(ws)]) == 0
    assert (ws / "exports/full/latest/model.safetensors").is_file()


def test_tensorboard_events_or_a_clear_message(curated, capsys):
    ws = curated
    code = main(["train", "-w", str(ws), "training.max_steps=2", "logging.tensorboard=true"])
    if importlib.util.find_spec("tensorboard") is None:
        assert code == 2
        assert "logging.tensorboard needs: pip install 'tunewright[tensorboard]'" in capsys.readouterr().err
    else:
        assert code == 0
        assert list((latest_run(ws) / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("pad", ["eos", "none"])
def test_a_tokenizer_without_its_own_pad_token_trains_without_touching_the_vocabulary(curated, pad):
    """Real models pad with EOS (SmolLM2) or have no pad token (Llama 3): no resize, a small portable adapter."""
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    ws = curated
    config_path = ws / "models/tiny-base/tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if pad == "eos":
        config["pad_token"] = config["eos_token"]
    else:
        config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    vocab = json.loads((ws / "models/tiny-base/config.json").read_text())["vocab_size"]
    assert main(["train", "-w", str(ws), *SHORT, "training.max_steps=3", "checkpoint.every=null"]) == 0
    adapter = latest_run(ws) / "adapter"
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_" in k for k in keys), [k for k in keys if "lora_" not in k]
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "models/tiny-base"
    assert str(ws) not in (adapter / "adapter_config.json").read_text()
    assert "Model Card for Model ID" not in (adapter / "README.md").read_text()
    base = AutoModelForCausalLM.from_pretrained(ws / "models/tiny-base")
    model = PeftModel.from_pretrained(base, str(adapter))
    assert model.get_input_embeddings().weight.shape[0] == vocab


def test_an_adapter_on_a_local_base_is_saved_and_loaded_without_asking_the_hub(curated):
    import warnings

    ws = curated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", "-w", str(ws), "training.max_steps=2", "checkpoint.every=null"]) == 0
        first = resolve_model(ws, "latest:train").run_id
        # continuing it loads the portable adapter, whose base is named relative to the workspace
        more = ["training.max_steps=2", "checkpoint.every=null", f"model.init_from={first}"]
        assert main(["train", "-w", str(ws), *more]) == 0
        source = resolve_model(ws, "latest:train")
        source.load()
    said = [str(w.message) for w in caught]
    assert not [s for s in said if "remote file" in s or "Could not find a config file" in s], said
    assert source.base_name == "models/tiny-base"  # the adapter names its base relative to the workspace
