"""The whole flywheel: production captured with a shadow candidate, the window replayed against the candidate, five
replayed items reviewed by keyboard in the browser (with a reload), the judgments exported as preference pairs,
curated and trained on with DPO, and the new run's lineage reaching back to the capture window."""

from __future__ import annotations

import json
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import openai
import torch
import yaml
from browser import chromium_page, judge, needs_chromium, start_reviewing
from safetensors.torch import load_file, save_file

from tunewright.cli.main import main
from tunewright.core import capture_store as store
from tunewright.core.registry import open_registry
from tunewright.runtimes.net import free_port

pytestmark = needs_chromium
QUESTIONS = [
    "The orders table in sales looks stale since this morning. What should I do first?",
    "Row counts in finance.ledger dropped by half overnight. What now?",
    "A dashboard on hr.payroll shows yesterday's numbers. Where do I start?",
    "The clicks table in sandbox has duplicate rows. What is the first step?",
    "Nightly load of ops.tickets failed with a schema error. What do I do?",
    "Who should I page when analytics.events is late?",
]


def _latest(ws: Path, stage: str) -> dict:
    found = [json.loads(m.read_text()) for m in (ws / "runs").glob("*/manifest.json")]
    return max((m for m in found if m["stage"] == stage), key=lambda m: m["started_at"])


def _shadows_answered(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = [
        line for line in text.splitlines() if line.startswith('tunewright_shadow_requests_total{outcome="answered"}')
    ]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def _candidate(ws: Path) -> str:
    """The training run exported as an adapter, its LoRA deltas halved: a candidate that answers differently."""
    assert main(["export", "latest:train", "--format", "adapter", "--name", "cand", "-w", str(ws)]) == 0
    weights_file = ws / "exports/cand/v1/adapter_model.safetensors"
    weights = load_file(weights_file)
    save_file({k: v * 0.5 if "lora_B" in k else v for k, v in weights.items()}, weights_file)
    return "exports/cand/v1"


def test_production_traffic_becomes_a_dpo_run_through_shadow_replay_and_review(quickstart_copy, launch, capsys):
    ws = quickstart_copy
    candidate = _candidate(ws)

    # 1. production serves with capture on, the candidate answering every request in the shadow
    port = free_port("127.0.0.1")
    serve = [sys.executable, "-m", "tunewright", "serve", "support-assistant@production", "-w", str(ws)]
    settings = ["capture.enabled=true", f"adapters.cand={candidate}", "shadow.candidate=cand", "shadow.share=1.0"]
    settings.append(f"shadow.max_inflight={len(QUESTIONS)}")
    server = launch([*serve, "-p", str(port), *settings], f"http://127.0.0.1:{port}/v1/health/ready", timeout=180)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    for question in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        client.chat.completions.create(model="support-assistant", messages=messages, max_tokens=40, temperature=0)
    deadline = time.monotonic() + 120
    while _shadows_answered(port) < len(QUESTIONS):  # shadow answers finish after production's
        assert time.monotonic() < deadline
        time.sleep(0.2)
    server.terminate()
    server.wait(timeout=60)  # SIGTERM: the window is recorded as the server stops
    window = _latest(ws, "capture")["run_id"]
    with closing(store.connect(ws / "monitor/capture.sqlite", readonly=True)) as conn:
        rows = [r for r in store.read_requests(conn) if r["window_id"] == window]
    shadows = [r for r in rows if r["request"].get("shadow_of")]
    assert len(shadows) == len(QUESTIONS) and {r["model"] for r in shadows} == {"cand"}

    # 2. the window replayed: the candidate against the version that served it
    code = main(["eval", "--replay", "latest", "--model", "cand@v1", "-w", str(ws), "generation.max_new_tokens=40"])
    assert code in (0, 1)  # GO or NO-GO, the replay is recorded either way
    replay = _latest(ws, "eval")
    assert window in replay["parents"] and replay["results"]["replay"]["items"] == len(QUESTIONS)

    # 3. five replayed items reviewed by keyboard, with a reload halfway
    port = free_port("127.0.0.1")
    review = [sys.executable, "-m", "tunewright", "review", "serve", replay["run_id"], "-w", str(ws)]
    launch([*review, "-p", str(port)], f"http://127.0.0.1:{port}/api/pairs", timeout=60)
    with chromium_page() as page:
        start_reviewing(page, f"http://127.0.0.1:{port}/", "sme")
        judge(page, "1")
        judge(page, "2", correction="First step: check the freshness monitor, then page the table owner.")
        judge(page, "1")
        page.reload()
        page.wait_for_selector("#review:not(.hidden)")
        assert page.inner_text("#progress") == f"3 / {len(QUESTIONS)} judged"
        judge(page, "2")
        judge(page, "1")
        assert page.inner_text("#progress") == f"5 / {len(QUESTIONS)} judged"

    # 4. the judgments become preference pairs, refused by curation until the source says why they may be used
    assert main(["review", "export", replay["run_id"], "-w", str(ws)]) == 0
    review_run = _latest(ws, "review")
    pairs_path = f"data/preferences/review-{replay['run_id']}.jsonl"
    pairs = [json.loads(line) for line in (ws / pairs_path).read_text().splitlines()]
    assert len(pairs) >= 5  # five preferences (answers that differ) and the correction
    config = ws / "configs" / "curate.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["allowed_licenses"].append("internal")
    cfg["sources"].append({"name": "reviewed", "path": pairs_path, "license": "internal", "kind": "preference"})
    cfg["split"] = {"validation": 0.0, "test": 0.0, "seed": 42}
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["curate", "-w", str(ws)]) == 2
    assert "sources[" in (err := capsys.readouterr().err) and "usage_note" in err and review_run["run_id"] in err
    cfg["sources"][-1]["usage_note"] = "support staff's own questions, reviewed by our experts"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["curate", "-w", str(ws)]) == 0
    curated = _latest(ws, "curate")
    assert curated["results"]["preference_pairs"]["kept_by_source"].get("reviewed", 0) >= 1

    # 5. DPO on them, chained from the SFT run; its lineage reaches the capture window
    sft = _latest(ws, "train")["run_id"]
    dpo = [
        "objective=dpo",
        "data.train_path=data/splits/pairs-train.jsonl",
        "data.validation_path=null",
        f"model.init_from={sft}",
        "training.max_steps=2",
        "training.micro_batch_size=2",
        "checkpoint.every=null",
    ]
    assert main(["train", "-w", str(ws), *dpo]) == 0
    trained = _latest(ws, "train")
    assert trained["run_id"] != sft and curated["run_id"] in trained["parents"]
    with open_registry(ws) as registry:
        ancestors = registry.ancestors(trained["run_id"])
    for run in (curated["run_id"], review_run["run_id"], replay["run_id"], window):
        assert run in ancestors
    assert torch.isfinite(torch.tensor(trained["results"]["final_train_loss"]))
