"""Canary releases through `tunewright serve`: a weight of the name's traffic goes to the candidate version, the
monitor's thresholds decide, a breach rolls the alias back in the registry, a clean sample can promote."""

from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import openai
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import concurrently
from tunewright.cli.main import main
from tunewright.core import capture_store as store
from tunewright.core.registry import open_registry
from tunewright.runtimes.net import free_port

SCHEMA = {
    "type": "object",
    "properties": {"table": {"type": "string"}, "kind": {"type": "string"}, "escalate": {"type": "boolean"}},
    "required": ["table", "kind", "escalate"],
}
MIN_REQUESTS = 10
EVAL_FAST = [
    "generation.max_new_tokens=24",
    "tasks=[{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{type: format, pattern: '^First step: '}]}]",
    "gates=[]",
]


@pytest.fixture(scope="module")
def canary_ws(quickstart_run, tmp_path_factory) -> Path:
    """The quickstart's workspace with its training run exported as adapter versions helper@v1..v3, v3 planted
    broken (its LoRA B matrices replaced by noise: it answers garbage and runs JSON out to max_tokens)."""
    ws = Path(shutil.copytree(quickstart_run[0], tmp_path_factory.mktemp("canary") / "ws", symlinks=True))
    for _ in range(3):
        assert main(["export", "latest:train", "--format", "adapter", "--name", "helper", "-w", str(ws)]) == 0
    weights_file = ws / "exports/helper/v3/adapter_model.safetensors"
    weights = load_file(weights_file)
    noise = torch.Generator().manual_seed(0)
    for name, w in weights.items():
        if "lora_B" in name:
            weights[name] = torch.randn(w.shape, generator=noise, dtype=w.dtype)
    save_file(weights, weights_file)
    with open_registry(ws) as registry:
        registry.move_alias("helper", "production", 1, "test", "first release", "promote")
    return ws


def _serve(launch, ws: Path, *overrides: str) -> str:
    port = free_port("127.0.0.1")
    settings = [
        "capture.enabled=true",
        "canary.candidate=helper@staging",
        "canary.weight=0.5",
        f"canary.min_requests={MIN_REQUESTS}",
        "canary.check_every_s=0.3",
        *overrides,
    ]
    cmd = [sys.executable, "-m", "tunewright", "serve", "helper@production", "-w", str(ws), "-p", str(port)]
    launch([*cmd, *settings], f"http://127.0.0.1:{port}/v1/health/ready", timeout=180)
    return f"http://127.0.0.1:{port}"


def _ask(client: openai.OpenAI, i: int) -> None:
    """Half the traffic asks for a JSON incident under a schema, half asks a runbook question."""
    if i % 2:
        fmt = {"type": "json_schema", "json_schema": {"name": "incident", "schema": SCHEMA}}
        messages = [{"role": "user", "content": f"Alert: table sandbox.t{i} failed its freshness check. As JSON."}]
        client.chat.completions.create(
            model="helper", messages=messages, max_tokens=48, temperature=0, response_format=fmt
        )
    else:
        messages = [{"role": "user", "content": f"How do I backfill table t{i}?"}]
        client.chat.completions.create(model="helper", messages=messages, max_tokens=48, temperature=0)


def _state(url: str) -> str:
    text = httpx.get(f"{url}/metrics").text
    on = [line for line in text.splitlines() if line.startswith("tunewright_canary_state{") and line.endswith(" 1.0")]
    return on[0].split('state="')[1].split('"')[0]


def _arms(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    lines = [line for line in text.splitlines() if line.startswith("tunewright_canary_requests_total{")]
    return {line.split('arm="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in lines}


def _drive_until(url: str, states: set[str], limit: int) -> int:
    """Send pairs of requests until the canary reaches one of `states`; the number sent."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    sent = 0
    while _state(url) not in states:
        assert sent < limit, f"the canary is still {_state(url)} after {sent} requests"
        concurrently(lambda i, start=sent: _ask(client, start + i), 2)
        sent += 2
        time.sleep(0.2)
    return sent


def _routed_rows(ws: Path) -> list[dict]:
    with closing(store.connect(ws / "monitor/capture.sqlite", readonly=True)) as conn:
        rows = list(store.read_requests(conn))
    window = max(rows, key=lambda r: r["ts"])["window_id"]
    return [r for r in rows if r["window_id"] == window and r["request"].get("canary")]


def test_a_broken_candidate_is_rolled_back_within_the_sample(canary_ws, launch):
    ws = canary_ws
    with open_registry(ws) as registry:
        registry.move_alias("helper", "staging", 2, "test", "staged", "promote")
        registry.move_alias("helper", "staging", 3, "test", "new candidate", "promote")
    url = _serve(launch, ws)
    _drive_until(url, {"rolled_back"}, limit=8 * MIN_REQUESTS)
    arms = _arms(url)
    assert arms["candidate"] <= MIN_REQUESTS + 8  # decided on the configured sample, a check or two later

    with open_registry(ws) as registry:
        assert registry.alias_version("helper", "staging") == 2  # back to what it held before v3
        assert registry.alias_version("helper", "production") == 1
        move = registry.alias_moves("helper", "staging")[-1]
    assert (move["from_version"], move["to_version"], move["kind"]) == (3, 2, "canary-rollback")
    assert move["reason"].startswith("canary: helper@v3 breached after ")
    assert "json_validity" in move["reason"]  # the garbage JSON is what the thresholds caught

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    concurrently(lambda i: _ask(client, i), 6)
    assert _arms(url)["candidate"] == arms["candidate"]  # nothing goes to the candidate any more
    time.sleep(1.5)  # the capture writer stores in batches twice a second
    rows = _routed_rows(ws)
    assert len(rows) == sum(_arms(url).values())  # every routing decision is in the capture
    for row in rows:
        decision = row["request"]["canary"]
        assert decision["candidate"] == "helper@v3" and decision["weight"] in (0.5, 0.0)
        assert row["model"] == ("helper-v3" if decision["arm"] == "candidate" else "helper")
    after = [r["request"]["canary"]["arm"] for r in rows if r["request"]["canary"]["state"] == "rolled_back"]
    assert len(after) >= 6 and set(after) == {"production"}


def test_a_good_candidate_stays_and_a_clean_sample_promotes_it_through_the_gates(canary_ws, launch):
    """Clean but not yet evaluated against production: held in place at its weight. Evaluated: promoted."""
    ws = canary_ws
    with open_registry(ws) as registry:
        registry.move_alias("helper", "staging", 2, "test", "staged again", "promote")
    url = _serve(launch, ws, "canary.promote_to=production")
    _drive_until(url, {"held"}, limit=8 * MIN_REQUESTS)  # clean, but v2 was never evaluated against v1
    with open_registry(ws) as registry:
        assert registry.alias_version("helper", "staging") == 2  # left in place
        assert registry.alias_moves("helper", "staging")[-1]["kind"] == "promote"
        assert registry.alias_version("helper", "production") == 1
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    before = _arms(url)["candidate"]
    concurrently(lambda i: _ask(client, i), 16)
    assert _arms(url)["candidate"] > before  # a held candidate keeps its share (all 16 elsewhere: p = 2^-16)

    assert main(["eval", "-w", str(ws), "--model", "helper@v2", "--baseline", "helper@production", *EVAL_FAST]) == 0
    url = _serve(launch, ws, "canary.promote_to=production")
    _drive_until(url, {"promoted"}, limit=8 * MIN_REQUESTS)
    with open_registry(ws) as registry:
        assert registry.alias_version("helper", "production") == 2
        move = registry.alias_moves("helper", "production")[-1]
    assert move["kind"] == "promote" and move["reason"].startswith("canary: helper@v2 clean over ")
    before = _arms(url)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    concurrently(lambda i: _ask(client, i), 4)
    after = _arms(url)
    assert after["candidate"] - before["candidate"] == 4  # promoted: it answers all of the name's traffic
    assert json.loads(httpx.get(f"{url}/v1/models").text)["data"][0]["id"] == "helper"


def test_canary_settings_are_checked_before_serving(canary_ws, capsys):
    ws = canary_ws
    base = ["serve", "helper@production", "-w", str(ws), "capture.enabled=true"]
    assert main([*base, "canary.candidate=helper@v2"]) == 2
    assert "canary.candidate" in capsys.readouterr().err
    assert main(["serve", "helper@production", "-w", str(ws), "canary.candidate=helper@staging"]) == 2
    assert "capture.enabled=true" in capsys.readouterr().err
    assert main([*base, "canary.candidate=support-assistant@production"]) == 2
    assert "serve a version of 'support-assistant'" in capsys.readouterr().err
    assert (
        main(
            [
                "serve",
                "support-assistant@production",
                "-w",
                str(ws),
                "capture.enabled=true",
                "canary.candidate=support-assistant@production",
            ]
        )
        == 2
    )
    assert "the version being served" in capsys.readouterr().err
