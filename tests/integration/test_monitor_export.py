"""Production back into data: capture real traffic with feedback, export it as chat and preference sources,
and curate them only once the source says why the team may train on them; lineage back to the window."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import yaml
from transformers import AutoModelForCausalLM

from tunewright.cli.main import main
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.capture import capture_window
from tunewright.serve.config import CaptureConfig, ServeConfig
from tunewright.serve.service import Served

EMAIL = "dana.smith@example.com"


def _manifest(ws: Path, run_id: str) -> dict:
    return json.loads((ws / "runs" / run_id / "manifest.json").read_text())


def _latest(ws: Path, stage: str) -> dict:
    found = [json.loads(m.read_text()) for m in (ws / "runs").glob("*/manifest.json")]
    return max((m for m in found if m["stage"] == stage), key=lambda m: m["started_at"])


def test_feedback_becomes_chat_and_preference_sources_with_lineage(workspace, tiny_base, capsys):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        return Engine(model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=4)), Served("tiny", str(tiny_base))

    cfg = CaptureConfig(enabled=True)
    with (
        capture_window(workspace, cfg, {"tiny": "tiny-base"}, [], ["serve"]) as capture,
        BackgroundServer(create_app(load, ServeConfig(max_new_tokens=12), capture=capture)) as server,
    ):
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ids = []
        for i in range(4):
            question = f"Question {i}: is hr.payroll stale? Mail {EMAIL} when it is."
            resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": question}])
            ids.append(resp.id)
        feedback = [
            {"id": ids[0], "score": 1},
            {"id": ids[1], "score": -1, "correction": "First step: check the load job of hr.payroll."},
            {"id": ids[2], "correction": {"role": "assistant", "content": "Escalate to the owner."}},
            {"id": ids[3], "score": -1, "comment": "wrong table"},
        ]
        for body in feedback:
            assert httpx.post(f"{server.base_url}/feedback", json=body).status_code == 200
    window = _latest(workspace, "capture")["run_id"]

    assert main(["monitor", "export", "latest", "-w", str(workspace)]) == 0
    chat_run = _latest(workspace, "monitor-export")
    assert chat_run["parents"] == [window]
    chat_file = workspace / f"data/raw/production-{window}-chat.jsonl"
    chat = [json.loads(line) for line in chat_file.read_text().splitlines()]
    assert [r["id"] for r in chat] == ids[:3]
    assert chat[1]["messages"][-1] == {"role": "assistant", "content": "First step: check the load job of hr.payroll."}
    assert chat[2]["messages"][-1]["content"] == "Escalate to the owner."
    assert all(r["meta"]["origin"] == "production" and r["meta"]["capture_window"] == window for r in chat)
    assert EMAIL not in chat_file.read_text()  # the store held the prompts scrubbed, and so does the export

    out = "data/raw/production-pairs.jsonl"
    assert main(["monitor", "export", window, "--kind", "preference", "--out", out, "-w", str(workspace)]) == 0
    pairs = [json.loads(line) for line in (workspace / out).read_text().splitlines()]
    assert [p["id"] for p in pairs] == ids[1:3]
    assert (
        pairs[0]["chosen"][-1]["content"].startswith("First step") and pairs[0]["rejected"][-1]["role"] == "assistant"
    )

    config = workspace / "configs" / "curate.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["allowed_licenses"].append("internal")
    cfg["sources"].append({"name": "production", "path": str(chat_file), "license": "internal"})
    cfg["sources"].append({"name": "prod_pairs", "path": out, "license": "internal", "kind": "preference"})
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["curate", "-w", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert "usage_note" in err and chat_run["run_id"] in err

    for source in cfg["sources"][-2:]:
        source["usage_note"] = "users agreed to the product's terms, which allow training on their questions"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["curate", "-w", str(workspace)]) == 0
    curated = _latest(workspace, "curate")
    assert chat_run["run_id"] in curated["parents"]
    assert _latest(workspace, "monitor-export")["run_id"] in curated["parents"]
    assert curated["results"]["kept_by_source"].get("production", 0) >= 1
    card = (workspace / "reports" / "data-card.md").read_text()
    assert "`production` may be trained on because: users agreed" in card
    assert "`prod_pairs` may be trained on because: users agreed" in card


def test_export_refuses_an_unknown_window_and_a_window_without_feedback(workspace, capsys):
    assert main(["monitor", "export", "latest", "-w", str(workspace)]) == 2
    assert "no capture window is recorded" in capsys.readouterr().err
    assert main(["monitor", "export", "--kind", "bogus", "latest", "-w", str(workspace)]) == 2
