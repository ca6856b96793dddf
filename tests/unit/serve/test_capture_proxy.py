"""The capturing proxy that `serve --engine vllm` puts in front of vLLM, here in front of a real OpenAI-compatible
upstream (tunewright's own server on the tiny model): the official openai client sees the upstream's answers
unchanged, and every sampled request is captured once, with the answer folded from its stream."""

import time

import httpx
import openai
import pytest
from transformers import AutoModelForCausalLM

from conftest import concurrently
from tunewright.core import capture_store as store
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.capture import Capture
from tunewright.serve.config import CaptureConfig, ServeConfig
from tunewright.serve.proxy import Folded, create_proxy
from tunewright.serve.service import Served

EMAIL = "dana.smith@example.com"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "notify",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string", "pattern": "^[a-z.]{1,16}$"}},
                "required": ["to"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture(scope="module")
def upstream(tiny_base, tiny_adapters):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        engine = Engine(
            model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=8, max_model_len=1024), tiny_adapters
        )
        return engine, Served("tiny", str(tiny_base))

    with BackgroundServer(create_app(load, ServeConfig(max_new_tokens=64))) as server:
        yield server


def proxied(upstream, path, **capture):
    cfg = CaptureConfig(enabled=True, **capture)
    grab = Capture(cfg, path, "capture-proxy", {"tiny": "exports/tiny/v1"})
    app = create_proxy(upstream.base_url.removesuffix("/v1"), ServeConfig(), None, grab, {"alpha", "beta"})
    return BackgroundServer(app), grab


def scraped(server, line, timeout=10):
    """/metrics once it shows `line` (the writer thread stores records a moment after they are answered)."""
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(server.base_url.removesuffix("/v1") + "/metrics").text
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def captured_rows(path):
    return {r["id"]: r for r in store.read_requests(store.connect(path, readonly=True))}


def test_answers_pass_unchanged_and_each_request_is_captured_once(upstream, tmp_path):
    direct = openai.OpenAI(base_url=upstream.base_url, api_key="unused", max_retries=0)
    server, grab = proxied(upstream, tmp_path / "capture.sqlite")
    with server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ask = {"messages": [{"role": "user", "content": f"Mail {EMAIL}: is hr.payroll stale?"}], "max_tokens": 12}
        want = direct.chat.completions.create(model="alpha", temperature=0, **ask)
        got = client.chat.completions.create(model="alpha", temperature=0, **ask)
        chunks = list(
            client.chat.completions.create(
                model="tiny", temperature=0, stream=True, extra_headers={"X-Workload-Id": "team-a"}, **ask
            )
        )
        usage_chunks = list(
            client.chat.completions.create(
                model="tiny", temperature=0, stream=True, stream_options={"include_usage": True}, **ask
            )
        )
        text = client.completions.create(model="beta", prompt="Freshness", max_tokens=6, temperature=0)
        missing = httpx.post(server.base_url + "/chat/completions", json={"model": "nope", **ask})
        models = client.models.list()
        metrics = scraped(server, 'tunewright_capture_records_total{outcome="stored"} 5.0')
        ready = httpx.get(server.base_url + "/health/ready")
    grab.close()

    assert got.choices[0].message.content == want.choices[0].message.content and got.usage == want.usage
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert all(c.choices for c in chunks)  # the usage chunk the proxy asked for is not shown to this client
    assert usage_chunks[-1].choices == [] and usage_chunks[-1].usage.completion_tokens > 0
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert {m.id for m in models.data} == {"tiny", "alpha", "beta"} and ready.status_code == 200
    assert "tunewright_requests_total" in metrics  # the upstream's own metrics
    assert 'tunewright_capture_records_total{outcome="stored"} 5.0' in metrics  # written off the request path

    rows = captured_rows(tmp_path / "capture.sqlite")
    assert len(rows) == 5
    alpha = rows[got.id]
    assert alpha["adapter"] == "alpha" and alpha["version"] is None and alpha["stream"] == 0
    assert alpha["response"]["choices"][0]["content"] == got.choices[0].message.content
    assert alpha["completion_tokens"] == got.usage.completion_tokens and alpha["pii"] == {"email": 1}
    assert EMAIL not in str(alpha["request"]) and "[EMAIL]" in alpha["request"]["messages"][0]["content"]
    tiny = rows[chunks[0].id]
    assert tiny["version"] == "exports/tiny/v1" and tiny["workload"] == "team-a" and tiny["stream"] == 1
    assert tiny["response"]["choices"][0]["content"] == streamed and tiny["status"] == 200
    assert tiny["completion_tokens"] > 0 and 0 < tiny["ttft_s"] <= tiny["total_s"]
    assert "stream_options" not in tiny["request"]  # the request as the client sent it
    assert rows[text.id]["response"]["choices"][0]["text"] == text.choices[0].text
    assert rows[text.id]["route"] == "completions" and rows[text.id]["adapter"] == "beta"
    (failed,) = [r for r in rows.values() if r["status"] == 404]
    assert failed["model"] == "nope" and failed["response"] is None


def test_streamed_tool_calls_are_captured_as_calls_and_feedback_joins(upstream, tmp_path):
    server, grab = proxied(upstream, tmp_path / "capture.sqlite")
    with server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        ask = {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"Notify {EMAIL}."}],
            "tools": TOOLS,
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "max_tokens": 240,
            "temperature": 0,
        }
        whole = client.chat.completions.create(**ask)
        chunks = list(client.chat.completions.create(stream=True, **ask))
        done = httpx.post(server.base_url + "/feedback", json={"id": whole.id, "score": 0, "comment": f"ask {EMAIL}"})
        unknown = httpx.post(server.base_url + "/feedback", json={"id": "chatcmpl-nope", "score": 1})
        invalid = httpx.post(server.base_url + "/feedback", json={"id": whole.id})
    grab.close()

    assert done.status_code == 200 and unknown.status_code == 404 and invalid.status_code == 400
    rows = captured_rows(tmp_path / "capture.sqlite")
    call = whole.choices[0].message.tool_calls[0]
    for rid in (whole.id, chunks[0].id):
        choice = rows[rid]["response"]["choices"][0]
        assert choice["finish_reason"] == whole.choices[0].finish_reason
        (kept,) = choice["tool_calls"]
        assert kept["function"] == {"name": "notify", "arguments": call.function.arguments}
    assert rows[whole.id]["feedback"][0]["comment"] == "ask [EMAIL]"


def test_sampling_and_concurrency(upstream, tmp_path):
    server, grab = proxied(upstream, tmp_path / "none.sqlite", sample_rate=0.0)
    with server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert resp.choices[0].message.content is not None
    grab.close()
    assert captured_rows(tmp_path / "none.sqlite") == {}

    server, grab = proxied(upstream, tmp_path / "all.sqlite")
    ids, errors = set(), []
    with server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)

        def ask(i):
            try:
                model = ("tiny", "alpha", "beta")[i % 3]
                messages = [{"role": "user", "content": f"Question {i}"}]
                stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, stream=True)
                ids.add(next(iter(stream)).id)
                stream.close()  # half of them go away after the first chunk
                if i % 2 == 0:
                    ids.add(client.chat.completions.create(model=model, messages=messages, max_tokens=8).id)
            except Exception as exc:
                errors.append(exc)

        concurrently(ask, 16)
    grab.close()
    rows = captured_rows(tmp_path / "all.sqlite")
    assert not errors and set(rows) == ids and len(ids) == 24
    assert all(r["status"] in (200, 499) for r in rows.values())


def test_folding_a_stream_keeps_calls_in_order_and_marks_errors():
    folded = Folded(chat=True)
    events = [
        {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    answered = [folded.add_event(e) for e in events]
    assert answered == [False, True, True, True, True, False]
    (choice,) = folded.captured_choices()
    assert [c["id"] for c in choice["tool_calls"]] == ["a", "b"] and folded.id == "c1"
    assert choice["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert choice["finish_reason"] == "tool_calls" and not folded.failed
    folded.add_event({"error": {"message": "boom", "type": "server_error"}})
    assert folded.failed
