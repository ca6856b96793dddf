"""Replay: captured production prompts as an eval of a candidate against the version that answered them."""

from __future__ import annotations

import json
from pathlib import Path

import openai
from transformers import AutoModelForCausalLM

from tunewright.cli.main import main
from tunewright.core.modeling import load_tokenizer
from tunewright.demo.setup import BASE_MODEL_DIR
from tunewright.engine import Engine, EngineConfig
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.capture import capture_window
from tunewright.serve.config import CaptureConfig, ServeConfig
from tunewright.serve.service import Served

SCHEMA = {
    "type": "object",
    "properties": {"severity": {"enum": ["low", "high"]}},
    "required": ["severity"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {
        "name": "check_freshness",
        "parameters": {"type": "object", "properties": {"table": {"type": "string"}}, "required": ["table"]},
    },
}


def _latest(ws: Path, stage: str) -> dict:
    found = [json.loads(m.read_text()) for m in (ws / "runs").glob("*/manifest.json")]
    return max((m for m in found if m["stage"] == stage), key=lambda m: m["started_at"])


def _capture(ws: Path, model_dir: Path) -> str:
    """Serve the model as production with capture on and send it text, JSON and tool requests; the window id."""

    def load():
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        return Engine(model, load_tokenizer(model_dir), EngineConfig(max_num_seqs=4)), Served("tiny", str(model_dir))

    cfg = CaptureConfig(enabled=True)
    with (
        capture_window(ws, cfg, {"tiny": BASE_MODEL_DIR}, [], ["serve"]) as capture,
        BackgroundServer(create_app(load, ServeConfig(max_new_tokens=24), capture=capture)) as server,
    ):
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        for i in range(6):
            ask = {"model": "tiny", "messages": [{"role": "user", "content": f"Is table t{i} stale?"}]}
            if i % 3 == 1:
                ask["response_format"] = {"type": "json_schema", "json_schema": {"name": "alert", "schema": SCHEMA}}
            if i % 3 == 2:
                ask["tools"] = [TOOL]
            client.chat.completions.create(**ask, temperature=0)
    return _latest(ws, "capture")["run_id"]


def test_replay_scores_a_candidate_on_the_window_against_production(model_workspace, capsys):
    ws = model_workspace
    window = _capture(ws, ws / BASE_MODEL_DIR)

    code = main(["eval", "--replay", "latest", "--model", BASE_MODEL_DIR, "-w", str(ws)])
    out = capsys.readouterr().out
    run = _latest(ws, "eval")
    assert window in run["parents"]
    assert run["results"]["replay"] == {"window": window, "production": BASE_MODEL_DIR, "items": 6}
    summary = json.loads((ws / "runs" / run["run_id"] / "eval.json").read_text())
    assert {t["name"] for t in summary["tasks"]} == {"replay", "replay_json", "replay_tools"}
    metrics = {g["metric"] for g in summary["gates"]}
    assert {"replay.over_refusal_rate", "replay_json.json_valid", "replay.similar"} <= metrics
    assert "replay.judge_score" not in metrics  # no judge configured: its gate is left out
    # the tiny model never called the tool in production: call gates are left out, the no-call gate stays
    assert "replay_tools.no_call_accuracy" in metrics and "replay_tools.tool_name_accuracy" not in metrics
    items = [json.loads(line) for line in (ws / "data" / "replay" / f"{window}.jsonl").read_text().splitlines()]
    assert [i["source"] for i in items] == ["text", "json", "tools"] * 2
    assert all(i["response_format"]["type"] == "json_schema" for i in items if i["source"] == "json")
    # the candidate is production's own model: under the same formats it agrees with itself everywhere
    assert code == 0, out
    assert all(g["status"] == "PASS" for g in summary["gates"] if g["tier"] == "critical"), summary["gates"]
    answers = [json.loads(line) for line in (ws / "runs" / run["run_id"] / "results.jsonl").read_text().splitlines()]
    json_answers = [a["answer"] for a in answers if a["task"] == "replay_json" and a["role"] == "model"]
    assert json_answers and all(json.loads(a)["severity"] in ("low", "high") for a in json_answers)


def test_replay_without_a_capture_or_with_an_unknown_window_is_a_usage_error(model_workspace, capsys):
    ws = model_workspace
    assert main(["eval", "--replay", "latest", "--model", BASE_MODEL_DIR, "-w", str(ws)]) == 2
    assert "no capture window is recorded" in capsys.readouterr().err
    _capture(ws, ws / BASE_MODEL_DIR)
    assert main(["eval", "--replay", "capture-nope", "--model", BASE_MODEL_DIR, "-w", str(ws)]) == 2
    assert "capture-nope" in capsys.readouterr().err
