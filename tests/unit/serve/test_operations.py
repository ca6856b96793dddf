"""Adapter directories, the access log and the serve command's own checks."""

import json
import logging
import os
import shutil
import time

import httpx
import pytest
from transformers import AutoModelForCausalLM

from tunewright.cli.main import main
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig
from tunewright.serve.adapters_dir import AdapterDirectory
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.config import ServeConfig
from tunewright.serve.service import Served


def test_an_adapter_directory_is_kept_in_sync(tiny_base, tiny_adapters, tmp_path, caplog):
    engine = Engine(AutoModelForCausalLM.from_pretrained(tiny_base), load_tokenizer(tiny_base), EngineConfig(2, 128))
    folder = AdapterDirectory(engine, tmp_path, reserved={"tiny"})
    shutil.copytree(tiny_adapters["alpha"], tmp_path / "alpha")
    shutil.copytree(tiny_adapters["beta"], tmp_path / "bad name")
    shutil.copytree(tiny_adapters["beta"], tmp_path / "tiny")  # the served model's own name is never taken
    (tmp_path / "not-an-adapter").mkdir()
    with caplog.at_level(logging.WARNING, logger="tunewright.serve"):
        folder.sync()
    assert engine.adapters == ["alpha"] and "bad name is not a valid adapter name" in caplog.text
    before = folder.loaded["alpha"]
    time.sleep(0.01)
    weights = tmp_path / "alpha" / "adapter_model.safetensors"
    shutil.copy(tiny_adapters["beta"] / "adapter_model.safetensors", weights)  # a new version of alpha
    os.utime(weights, (before + 5, before + 5))
    shutil.copy(tiny_adapters["beta"] / "adapter_config.json", tmp_path / "alpha" / "adapter_config.json")
    folder.sync()
    assert folder.loaded["alpha"] > before
    shutil.rmtree(tmp_path / "alpha")
    folder.sync()
    assert engine.adapters == []
    engine.shutdown()


def test_the_access_log_has_one_json_line_per_request_without_prompt_text(tiny_base, caplog):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        return Engine(model, load_tokenizer(tiny_base), EngineConfig(2, 256)), Served("tiny", str(tiny_base))

    with (
        caplog.at_level(logging.INFO, logger="tunewright.access"),
        BackgroundServer(create_app(load, ServeConfig())) as srv,
    ):
        secret = "my account number is 12345 and my name is Jane"
        body = {"model": "tiny", "messages": [{"role": "user", "content": secret}], "max_tokens": 2}
        assert httpx.post(f"{srv.base_url}/chat/completions", json=body).status_code == 200
    lines = [json.loads(r.message) for r in caplog.records if r.name == "tunewright.access"]
    posted = [x for x in lines if x["path"] == "/v1/chat/completions"]
    assert posted and posted[0]["status"] == 200 and posted[0]["method"] == "POST" and posted[0]["ms"] >= 0
    assert secret not in caplog.text and "12345" not in caplog.text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--adapter", "just-a-name"], "--adapter 'just-a-name': expected NAME=PATH"),
        (["--adapter", "x=adapters/none"], "adapter 'x': no PEFT adapter at"),
        (
            ["--api-key-env", "TUNEWRIGHT_TEST_UNSET_KEY"],
            "the environment variable TUNEWRIGHT_TEST_UNSET_KEY is not set",
        ),
        (["--engine", "vllm", "vllm.python=/no/such/python"], "vllm.python '/no/such/python' is not an executable"),
    ],
)
def test_serve_checks_its_options_before_loading(model_workspace, capsys, monkeypatch, args, says):
    monkeypatch.delenv("TUNEWRIGHT_TEST_UNSET_KEY", raising=False)
    assert main(["serve", "models/tiny-base", "-w", str(model_workspace), *args]) == 2
    assert says in capsys.readouterr().err
