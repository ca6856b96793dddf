"""The server on 127.0.0.1, through the official openai client: API shapes, adapters, errors, operations."""

import json
import re
import threading
import time
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
import torch
from pydantic import BaseModel, Field
from transformers import AutoModelForCausalLM

from conftest import concurrently
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig, SamplingParams
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.config import ServeConfig
from tunewright.serve.service import Served

QUESTION = [{"role": "user", "content": "The table hr.payroll is stale. What should I do?"}]


def loader(tiny_base, adapters=None, **config):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        engine = Engine(model, load_tokenizer(tiny_base), EngineConfig(**config), adapters)
        return engine, Served("tiny", str(tiny_base))

    return load


@pytest.fixture(scope="module")
def server(tiny_base, tiny_adapters):
    cfg = ServeConfig(max_new_tokens=256, max_body_bytes=20_000)
    app = create_app(loader(tiny_base, tiny_adapters, max_num_seqs=8, max_model_len=1024), cfg)  # room for tools
    with BackgroundServer(app) as srv:
        yield srv, app.state.service


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0].base_url, api_key="unused", max_retries=0)


def direct(service, messages, adapter=None, **params):
    engine = service.engine
    return engine.generate([engine.chat_prompt(messages)], SamplingParams(**params), adapter)[0]


def test_models_list_names_the_base_and_its_adapters(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"tiny", "alpha", "beta"}
    assert models["alpha"].parent == "tiny" and models["tiny"].parent is None


@pytest.mark.parametrize("model", ["tiny", "alpha", "beta"])
def test_chat_completion_is_the_engine_answer_of_the_chosen_adapter(client, server, model):
    resp = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=16)
    expected = direct(server[1], QUESTION, None if model == "tiny" else model, max_tokens=16)
    assert resp.object == "chat.completion" and resp.model == model
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == expected.text
    assert resp.choices[0].finish_reason == expected.finish_reason
    assert resp.usage.prompt_tokens == expected.prompt_tokens
    assert resp.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_streaming_with_usage_concatenates_to_the_full_answer(client):
    full = client.chat.completions.create(model="alpha", messages=QUESTION, temperature=0, max_tokens=16)
    chunks = list(
        client.chat.completions.create(
            model="alpha",
            messages=QUESTION,
            temperature=0,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done(server):
    body = {"model": "tiny", "messages": QUESTION, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{server[0].base_url}/chat/completions", json=body, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_n_choices_seed_stop_logprobs_and_response_format(client):
    resp = client.chat.completions.create(
        model="tiny", messages=QUESTION, temperature=1.0, seed=7, n=3, max_tokens=8, logprobs=True, top_logprobs=2
    )
    again = client.chat.completions.create(
        model="tiny", messages=QUESTION, temperature=1.0, seed=7, n=3, max_tokens=8, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.message.content for c in resp.choices] == [c.message.content for c in again.choices]
    first = resp.choices[0].logprobs.content[0]
    assert len(first.top_logprobs) == 2 and first.logprob <= 0
    assert "".join(t.token for t in resp.choices[0].logprobs.content) == resp.choices[0].message.content
    full = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=32)
    cut = full.choices[0].message.content[6:9]
    stopped = client.chat.completions.create(
        model="tiny", messages=QUESTION, temperature=0, max_tokens=32, stop=[cut, "zz"]
    )
    assert stopped.choices[0].message.content == full.choices[0].message.content.split(cut)[0]
    assert stopped.choices[0].finish_reason == "stop"
    json_mode = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=4, response_format={"type": "json_object"}
    )
    assert json_mode.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=QUESTION, response_format={"type": "yaml"})
    with pytest.raises(openai.BadRequestError, match="at most 4 stop"):
        client.chat.completions.create(model="tiny", messages=QUESTION, stop=["a", "b", "c", "d", "e"])


def test_structured_outputs_choice_as_vllm_takes_it(client):
    verdicts = ["1", "2", "3", "4", "5"]
    for temperature in (0, 1.5):
        resp = client.chat.completions.create(
            model="tiny",
            messages=QUESTION,
            temperature=temperature,
            n=4,
            max_tokens=8,
            logprobs=True,
            top_logprobs=20,
            extra_body={"structured_outputs": {"choice": verdicts}},
        )
        assert all(c.message.content in verdicts and c.finish_reason == "stop" for c in resp.choices)
        top = resp.choices[0].logprobs.content[0].top_logprobs  # masked tokens: -9999, as OpenAI reports them
        assert {t.token for t in top if t.logprob > -9999} <= set(verdicts) and min(t.logprob for t in top) == -9999
    text = client.completions.create(
        model="tiny", prompt="Rate it:", max_tokens=8, extra_body={"structured_outputs": {"choice": ["good", "bad"]}}
    )
    assert text.choices[0].text in ("good", "bad")
    with pytest.raises(openai.BadRequestError, match=r"structural_tag not supported here \(json, json_object"):
        client.chat.completions.create(
            model="tiny", messages=QUESTION, extra_body={"structured_outputs": {"structural_tag": "x"}}
        )


class Incident(BaseModel):
    severity: Literal["low", "medium", "high"]
    page_on_call: bool
    table: str = Field(pattern="^[a-z]+[.][a-z]+$", max_length=12)


def test_json_schema_answers_parse_with_the_openai_client(client):
    """`chat.completions.parse` with a pydantic model (a strict json_schema): every sampled answer parses."""
    for _ in range(2):
        resp = client.chat.completions.parse(
            model="tiny", messages=QUESTION, response_format=Incident, temperature=1.0, n=8, max_tokens=120
        )
        for choice in resp.choices:
            assert choice.finish_reason == "stop"
            assert isinstance(choice.message.parsed, Incident)
            assert Incident.model_validate_json(choice.message.content) == choice.message.parsed
    schema = {**Incident.model_json_schema(), "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "incident", "schema": schema, "strict": True}}
    ask = {"model": "tiny", "messages": QUESTION, "max_tokens": 120, "temperature": 0, "response_format": fmt}
    chunks = client.chat.completions.create(**ask, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == client.chat.completions.create(**ask).choices[0].message.content
    Incident.model_validate_json(text)


def test_vllm_structured_outputs_regex_grammar_and_json(client):
    code = client.completions.create(
        model="tiny", prompt="Ticket:", max_tokens=12, extra_body={"structured_outputs": {"regex": "INC-[0-9]{3}"}}
    )
    assert re.fullmatch("INC-[0-9]{3}", code.choices[0].text)
    yes_no = client.chat.completions.create(
        model="tiny",
        messages=QUESTION,
        temperature=1.0,
        n=4,
        max_tokens=8,
        extra_body={"structured_outputs": {"grammar": 'root ::= "yes" | "no"'}},
    )
    assert {c.message.content for c in yes_no.choices} <= {"yes", "no"}
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model="tiny", messages=QUESTION, max_tokens=20, extra_body={"structured_outputs": {"json": schema}}
    )
    assert json.loads(answer.choices[0].message.content) in ({"ok": True}, {"ok": False})


FRESHNESS = {
    "type": "function",
    "function": {
        "name": "check_freshness",
        "description": "Hours since a table last loaded",
        "parameters": {
            "type": "object",
            "properties": {"table": {"type": "string", "pattern": "^[a-z_.]{1,16}$"}},
            "required": ["table"],
            "additionalProperties": False,
        },
    },
}
INCIDENT_TOOL = {
    "type": "function",
    "function": {
        "name": "open_incident",
        "parameters": {
            "type": "object",
            "properties": {"severity": {"enum": ["low", "high"]}, "page": {"type": "boolean"}},
            "required": ["severity", "page"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [FRESHNESS, INCIDENT_TOOL]


def test_required_and_named_tool_choice_always_return_valid_calls(client):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for choice, names in (
        ("required", set(schemas)),
        ({"type": "function", "function": {"name": "open_incident"}}, {"open_incident"}),
    ):
        resp = client.chat.completions.create(
            model="tiny",
            messages=QUESTION,
            tools=TOOLS,
            tool_choice=choice,
            parallel_tool_calls=False,
            temperature=1.0,
            n=8,
            max_tokens=240,
        )
        for c in resp.choices:
            assert c.finish_reason == "tool_calls" and c.message.content is None, (c.finish_reason, c.message)
            (call,) = c.message.tool_calls
            assert call.type == "function" and call.id.startswith("call_") and call.function.name in names
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_streamed_tool_calls_reassemble_to_the_whole_answer(client):
    ask = {"model": "tiny", "messages": QUESTION, "tools": TOOLS, "tool_choice": "required", "temperature": 0}
    ask |= {"parallel_tool_calls": False, "max_tokens": 240}
    whole = client.chat.completions.create(**ask).choices[0]
    calls, finish = {}, None
    for chunk in client.chat.completions.create(**ask, stream=True):
        for part in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            entry = calls.setdefault(part.index, {"name": "", "arguments": ""})
            entry["name"] += part.function.name or ""
            entry["arguments"] += part.function.arguments or ""
        finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
    expected = [{"name": c.function.name, "arguments": c.function.arguments} for c in whole.message.tool_calls]
    assert list(calls.values()) == expected and finish == whole.finish_reason == "tool_calls"


def test_a_conversation_with_calls_and_results_goes_on_and_auto_may_answer_in_text(client):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "check_freshness", "arguments": '{"table": "a.b"}'},
    }
    messages = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"hours": 30}'},
    ]
    for choice in ("auto", "none"):
        resp = client.chat.completions.create(
            model="tiny", messages=messages, tools=TOOLS, tool_choice=choice, max_tokens=40, temperature=1.0, n=4
        )
        for c in resp.choices:
            if c.message.tool_calls:
                assert choice == "auto" and c.finish_reason in ("tool_calls", "length")
                assert all(t.function.name in ("check_freshness", "open_incident") for t in c.message.tool_calls)
            else:
                assert c.message.content and not c.message.content.startswith("<")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"tools": [FRESHNESS, FRESHNESS]}, "tools: tools[1]: two tools are named 'check_freshness'"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "names 'nope'"),
        ({"tool_choice": "required"}, "asks for a tool call, but the request has no tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": "obj"}}}]},
            "not a valid JSON Schema",
        ),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "cannot be combined with response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
            "response_format: not a valid JSON Schema at type",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"uniqueItems": True}}}},
            'response_format: cannot enforce this json schema: Unimplemented keys: ["uniqueItems"]',
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "needs json_schema.schema"),
        ({"structured_outputs": {"regex": "[a-"}}, "structured_outputs: cannot enforce this regex"),
        ({"structured_outputs": {"regex": "a", "choice": ["b"]}}, "give one of regex, choice, not several"),
        ({"structured_outputs": {"regex": "a"}, "response_format": {"type": "json_object"}}, "not both"),
    ],
)
def test_an_unenforceable_constraint_is_a_400_and_the_server_goes_on(server, client, body, says):
    request = {"model": "tiny", "messages": QUESTION, "max_tokens": 4, **body}
    r = httpx.post(f"{server[0].base_url}/chat/completions", json=request, timeout=60)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]
    after = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=4).choices[0]
    assert after.finish_reason in ("stop", "length")  # the server still answers (the text may be empty)


def test_completions_echo_logprobs_as_lm_evaluation_harness_asks(server, tiny_base):
    """The exact request local-completions sends for log-likelihood, parsed as it parses it."""
    tokenizer = load_tokenizer(tiny_base)
    context = tokenizer("The table finance.ledger is")["input_ids"]
    continuations = [tokenizer(" stale")["input_ids"], tokenizer(" governed")["input_ids"]]
    body = {
        "model": "tiny",
        "prompt": [context + c for c in continuations],
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    out = httpx.post(f"{server[0].base_url}/completions", json=body, timeout=60).json()
    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    for choice, cont in zip(sorted(out["choices"], key=lambda c: c["index"]), continuations, strict=True):
        lp = choice["logprobs"]
        assert len(lp["token_logprobs"]) == len(context) + len(cont) + 1 and lp["token_logprobs"][0] is None
        score = sum(lp["token_logprobs"][len(context) : -1])
        greedy = all(
            t == max(top.values())
            for t, top in zip(
                lp["token_logprobs"][len(context) : -1], lp["top_logprobs"][len(context) : -1], strict=True
            )
        )
        ids = torch.tensor([context + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
        expected = sum(float(logprobs[len(context) + i - 1, t]) for i, t in enumerate(cont))
        assert score == pytest.approx(expected, abs=1e-4)
        expected_greedy = all(int(logprobs[len(context) + i - 1].argmax()) == t for i, t in enumerate(cont))
        assert greedy == expected_greedy
        assert choice["text"].startswith(tokenizer.decode(context + cont))


def test_completions_with_a_text_prompt_and_streaming(client):
    plain = client.completions.create(model="beta", prompt="First step:", max_tokens=8, temperature=0)
    streamed = list(
        client.completions.create(model="beta", prompt="First step:", max_tokens=8, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in streamed) == plain.choices[0].text
    assert plain.object == "text_completion" and plain.usage.completion_tokens <= 8


def test_errors_have_openai_shapes_and_the_server_keeps_serving(client, server):
    url = server[0].base_url
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert exc.value.body["code"] == "model_not_found"
    r = httpx.post(
        f"{url}/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("the body is not valid JSON")
    r = httpx.post(f"{url}/chat/completions", json={"model": "tiny", "messages": [], "n": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(
        f"{url}/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x" * 30_000}]}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(
        f"{url}/chat/completions",
        content=iter([b'{"model": "tiny", "messages": "', b"y" * 30_000, b'"}']),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413  # no Content-Length: counted as it arrives
    long = [{"role": "user", "content": "word " * 1200}]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="tiny", messages=long)
    assert exc.value.body["code"] == "context_length_exceeded"
    assert httpx.get(f"{url}/nothing-here").json()["error"]["type"] == "invalid_request_error"
    assert client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=2).choices[0].message.content


def test_health_readiness_and_metrics(client, server):
    root = server[0].base_url.removesuffix("/v1")
    client.chat.completions.create(model="alpha", messages=QUESTION, max_tokens=4)
    assert httpx.get(f"{root}/health").json() == {"status": "ok"}
    assert httpx.get(f"{root}/v1/health/live").status_code == 200
    assert httpx.get(f"{root}/v1/health/ready").json() == {"status": "ready"}
    text = httpx.get(f"{root}/metrics").text
    for name in (
        'tunewright_time_to_first_token_seconds_bucket{le="0.005",model="alpha"}',
        "tunewright_inter_token_latency_seconds_count",
        "tunewright_e2e_request_latency_seconds_sum",
        'tunewright_generation_tokens_total{model="alpha"}',
        "tunewright_prompt_tokens_total",
        'tunewright_requests_total{finish_reason="length",model="alpha"}',
        "tunewright_num_requests_running",
    ):
        assert name in text, name


def test_load_and_unload_adapters_over_http(client, server, tiny_adapters):
    url = server[0].base_url
    r = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": "gamma", "lora_path": str(tiny_adapters["beta"])})
    assert r.status_code == 200, r.text
    gamma = client.chat.completions.create(model="gamma", messages=QUESTION, temperature=0, max_tokens=12)
    beta = client.chat.completions.create(model="beta", messages=QUESTION, temperature=0, max_tokens=12)
    assert gamma.choices[0].message.content == beta.choices[0].message.content
    for bad in ("../x", "a/b", ""):
        r = httpx.post(f"{url}/load_lora_adapter", json={"lora_name": bad, "lora_path": str(tiny_adapters["beta"])})
        assert r.status_code == 400, bad
    assert httpx.post(f"{url}/load_lora_adapter", json={"lora_name": "x", "lora_path": "/nope"}).status_code == 400
    assert httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "gamma"}).status_code == 200
    assert httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "gamma"}).status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gamma", messages=QUESTION)


def test_concurrent_streams_over_three_models_equal_their_sequential_answers(client, server):
    models = ["tiny", "alpha", "beta"]
    expected = {
        m: client.chat.completions.create(model=m, messages=QUESTION, temperature=0, max_tokens=24)
        .choices[0]
        .message.content
        for m in models
    }
    answers, errors = [None] * 32, []

    def ask(i):
        try:
            stream = client.chat.completions.create(
                model=models[i % 3], messages=QUESTION, temperature=0, max_tokens=24, stream=True
            )
            answers[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    concurrently(ask, 32)
    assert errors == []
    assert answers == [expected[models[i % 3]] for i in range(32)]


def counter(root, name, **labels):
    text = httpx.get(f"{root}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    line = next((x for x in text.splitlines() if x.startswith(f"{name}{{{want}}}")), None)
    return float(line.split()[-1]) if line else 0.0


def test_a_client_that_disconnects_frees_its_slot(tiny_base):
    app = create_app(loader(tiny_base, max_num_seqs=1, max_model_len=2048), ServeConfig(max_new_tokens=2000))
    with BackgroundServer(app) as srv:
        root = srv.base_url.removesuffix("/v1")
        body = {"model": "tiny", "messages": QUESTION, "max_tokens": 1900, "min_tokens": 1900, "stream": True}
        with httpx.stream("POST", f"{srv.base_url}/chat/completions", json=body, timeout=60) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n == 3:
                    break  # leave after a few chunks
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        # with one slot, this answer can only come once the abandoned request has been cancelled
        done = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=4)
        assert done.choices[0].finish_reason == "length"
        assert counter(root, "tunewright_requests_total", finish_reason="abort", model="tiny") == 1
        assert app.state.service.engine.stats()["running"] == {}


def test_api_key_queue_full_and_not_ready(tiny_base, monkeypatch):
    cfg = ServeConfig(max_new_tokens=2000)
    release = threading.Event()
    app = create_app(loader(tiny_base, max_num_seqs=1, max_waiting=0, max_model_len=2048), cfg, api_key="s3cret")
    with BackgroundServer(app) as srv:
        engine = app.state.service.engine
        step = engine._step

        def held_step():  # the one slot stays busy until the second request has been refused
            step()
            release.wait(60)

        monkeypatch.setattr(engine, "_step", held_step)
        root = srv.base_url.removesuffix("/v1")
        assert httpx.get(f"{root}/v1/health/ready").status_code == 200  # probes need no key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0).models.list()
        assert httpx.get(f"{root}/metrics").status_code == 401
        client = openai.OpenAI(base_url=srv.base_url, api_key="s3cret", max_retries=0)
        body = {"model": "tiny", "messages": QUESTION, "max_tokens": 1900, "min_tokens": 1900, "stream": True}
        with httpx.stream(
            "POST",
            f"{srv.base_url}/chat/completions",
            json=body,
            headers={"Authorization": "Bearer s3cret"},
            timeout=60,
        ) as r:
            next(r.iter_lines())
            with pytest.raises(openai.RateLimitError) as exc:
                client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=2)
            assert exc.value.body["code"] == "queue_full"
            release.set()
    gate = threading.Event()

    def slow_load():
        gate.wait(60)
        return loader(tiny_base)()

    app = create_app(slow_load, ServeConfig())
    srv = BackgroundServer(app)
    srv.thread.start()
    while not srv.server.started:
        time.sleep(0.02)
    root = srv.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/v1/health/live").status_code == 200
    assert httpx.get(f"{root}/v1/health/ready").status_code == 503
    r = httpx.post(f"{srv.base_url}/chat/completions", json={"model": "tiny", "messages": QUESTION})
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
    gate.set()
    while not app.state.ready:
        time.sleep(0.02)
    assert httpx.get(f"{root}/v1/health/ready").status_code == 200
    srv.__exit__()


def test_shutdown_lets_a_request_in_flight_finish(tiny_base):
    app = create_app(loader(tiny_base, max_model_len=1024), ServeConfig(max_new_tokens=600, shutdown_grace_s=60))
    srv = BackgroundServer(app).__enter__()
    body = {"model": "tiny", "messages": QUESTION, "max_tokens": 500, "min_tokens": 500, "stream": True}
    lines = []
    with httpx.stream("POST", f"{srv.base_url}/chat/completions", json=body, timeout=120) as r:
        it = r.iter_lines()
        lines.append(next(it))
        stopper = threading.Thread(target=srv.__exit__)
        stopper.start()
        lines += [line for line in it if line]
    stopper.join(60)
    finals = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert finals[-1]["choices"][0]["finish_reason"] == "length" and lines[-1] == "data: [DONE]"
