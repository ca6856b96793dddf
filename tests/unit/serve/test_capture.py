"""Capture and feedback through the real server: the official openai client, concurrent streams over base and
adapters, planted PII, a server killed with SIGKILL under load."""

import json
import os
import signal
import sys
import threading
import time
from contextlib import closing

import httpx
import openai
import pytest
from transformers import AutoModelForCausalLM

from conftest import concurrently
from tunewright.core import capture_store as store
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig
from tunewright.runtimes.net import free_port
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.capture import Capture
from tunewright.serve.config import CaptureConfig, ServeConfig
from tunewright.serve.service import Served

EMAIL, CARD, PHONE, KEY = "dana.smith@example.com", "4111 1111 1111 1111", "+1 415 555 0133", "sk-" + "Zq9x" * 10
PLANTED = (EMAIL, "4111 1111 1111 1111", "415 555 0133", KEY)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "notify",
            "parameters": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]},
        },
    }
]


@pytest.fixture
def captured(tiny_base, tiny_adapters, tmp_path):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        engine = Engine(
            model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=8, max_model_len=1024), tiny_adapters
        )
        return engine, Served("tiny", str(tiny_base))

    capture = Capture(
        CaptureConfig(enabled=True), tmp_path / "capture.sqlite", "capture-test", {"tiny": "exports/tiny/v1"}
    )
    app = create_app(load, ServeConfig(max_new_tokens=64), capture=capture)
    with BackgroundServer(app) as server:
        yield server, capture
    capture.close()


def test_every_request_is_captured_once_with_its_version_and_no_pii(captured, tmp_path):
    server, capture = captured
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    ids: dict[str, tuple[str, bool]] = {}
    errors = []

    def ask(i):
        model = ("tiny", "alpha", "beta")[i % 3]
        question = f"Request {i}: mail {EMAIL}, card {CARD}, phone {PHONE}, key {KEY}. Is hr.payroll stale?"
        try:
            if i % 2:
                stream = client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": question}],
                    max_tokens=12,
                    stream=True,
                    extra_headers={"X-Workload-Id": f"team-{i % 4}"},
                )
                chunks = list(stream)
                ids[chunks[0].id] = (model, True)
            else:
                resp = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": question}], max_tokens=12, user=f"user-{i}"
                )
                ids[resp.id] = (model, False)
        except Exception as exc:
            errors.append(exc)

    concurrently(ask, 32)
    assert not errors and len(ids) == 32
    tool_reply = client.chat.completions.create(
        model="tiny",
        messages=[
            {"role": "user", "content": "Notify the owner."},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "notify", "arguments": json.dumps({"to": EMAIL})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": f"sent to {EMAIL}, cc {PHONE}"},
        ],
        tools=TOOLS,
        max_tokens=8,
    )
    ids[tool_reply.id] = ("tiny", False)
    done = client.post(
        "/feedback", body={"id": tool_reply.id, "score": 1, "comment": f"call me at {PHONE}"}, cast_to=httpx.Response
    )
    assert done.status_code == 200 and done.json() == {"id": tool_reply.id, "object": "feedback", "stored": True}
    capture.close()

    rows = {r["id"]: r for r in store.read_requests(store.connect(tmp_path / "capture.sqlite", readonly=True))}
    assert set(rows) == set(ids)  # each exactly once (the id is the primary key)
    for rid, (model, streamed) in ids.items():
        r = rows[rid]
        assert r["model"] == model and r["stream"] == int(streamed) and r["status"] == 200
        assert r["adapter"] == (None if model == "tiny" else model) and r["window_id"] == "capture-test"
        assert r["version"] == ("exports/tiny/v1" if model == "tiny" else None)
        assert r["completion_tokens"] > 0 and r["ttft_s"] > 0 and r["total_s"] >= r["ttft_s"] and r["queue_s"] >= 0
        assert r["response"]["choices"][0]["finish_reason"] in ("stop", "length")
    some = [r for r in rows.values() if r["id"] != tool_reply.id]
    assert all(r["pii"] == {"email": 1, "credit_card": 1, "phone": 1, "secret": 1} for r in some)
    assert {r["workload"] for r in some} >= {"team-0", "team-1", "user-0", "user-2"} - {"team-0", "team-2"}
    assert rows[tool_reply.id]["pii"] == {"email": 2, "phone": 1}
    assert rows[tool_reply.id]["feedback"][0]["comment"] == "call me at [PHONE]"
    for path in tmp_path.rglob("*"):  # the store, its WAL and anything else written
        if path.is_file():
            data = path.read_bytes()
            assert not any(p.encode() in data for p in PLANTED), path
    metrics = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    assert 'tunewright_capture_records_total{outcome="stored"} 33.0' in metrics
    assert 'tunewright_capture_pii_total{kind="email"} 34.0' in metrics


def test_feedback_is_validated_and_unknown_ids_are_404(captured):
    server, _ = captured
    url = server.base_url + "/feedback"
    assert httpx.post(url, json={"id": "chatcmpl-nope", "score": 1}).status_code == 404
    assert httpx.post(url, json={"id": "x"}).status_code == 400  # no score, comment or correction
    assert httpx.post(url, json={"id": "x", "score": 1, "extra": 2}).status_code == 400
    assert httpx.post(url, json={"id": "x", "comment": "c" * 5000}).status_code == 400
    resp = httpx.post(url, json={"id": "x", "correction": {"text": "y" * 40000}})
    assert resp.status_code == 400 and "correction" in resp.json()["error"]["message"]


def test_a_server_without_capture_takes_no_feedback(tiny_base):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        return Engine(model, load_tokenizer(tiny_base), EngineConfig(2, 256)), Served("tiny", str(tiny_base))

    with BackgroundServer(create_app(load, ServeConfig())) as server:
        resp = httpx.post(server.base_url + "/feedback", json={"id": "chatcmpl-1", "score": 1})
        metrics = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
    assert resp.status_code == 404 and "capture" in resp.json()["error"]["message"]
    assert "tunewright_capture" not in metrics  # an alert on capture being off cannot fire where it was never on


CLI = [sys.executable, "-m", "tunewright"]


def test_capture_window_is_a_run_and_sigkill_leaves_a_readable_store(model_workspace, launch):
    ws = model_workspace
    port = free_port()
    cmd = [*CLI, "serve", "models/tiny-base", "-w", str(ws), "--port", str(port), "capture.enabled=true"]
    base = f"http://127.0.0.1:{port}"
    proc = launch(cmd, f"{base}/v1/health/ready")
    body = {"model": "tiny-base", "messages": [{"role": "user", "content": "Is hr.payroll stale?"}], "max_tokens": 8}
    first = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=60).json()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    (window,) = (ws / "runs").glob("capture-*")
    manifest = json.loads((window / "manifest.json").read_text())
    assert manifest["stage"] == "capture" and manifest["results"]["stored"] == 1
    assert manifest["results"]["versions"] == {"tiny-base": "models/tiny-base"}

    proc = launch(cmd, f"{base}/v1/health/ready")
    answered = []

    def load_it():
        with httpx.Client(timeout=30) as http:
            while True:
                try:
                    answered.append(http.post(f"{base}/v1/chat/completions", json=body).json()["id"])
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=load_it) for _ in range(8)]
    for t in threads:
        t.start()

    def stored() -> int:  # rows the writer has committed so far (it writes in batches, every half second)
        with closing(store.connect(ws / "monitor" / "capture.sqlite", readonly=True)) as conn:
            return conn.execute("SELECT count(*) FROM requests").fetchone()[0]

    deadline = time.monotonic() + 60
    while (len(answered) < 40 or stored() < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # under load, with the writer at work
    proc.wait(30)
    for t in threads:
        t.join(60)
    conn = store.connect(ws / "monitor" / "capture.sqlite", readonly=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = list(store.read_requests(conn))
    assert rows[0]["id"] == first["id"] and len(rows) >= 2
    # nothing half-written; a row may be one whose answer the kill kept from its client (one per client at most)
    assert len({r["id"] for r in rows[1:]} - set(answered)) <= len(threads)
    assert all(r["response"]["choices"][0]["content"] is not None for r in rows)
    proc.returncode = 0  # the fixture's teardown stops servers it started; this one is gone already
