"""The server on 127.0.0.1, answered through the official openai client."""

import httpx
import openai
import pytest

from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import generate_chat
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.engine import Engine, cut_at_stop

QUESTION = [{"role": "user", "content": "The table hr.payroll is stale. What should I do?"}]


@pytest.fixture(scope="module")
def server(tiny_base):
    engine = Engine(ModelSource("tiny", str(tiny_base)))
    with BackgroundServer(create_app(engine, "tiny", max_new_tokens=24)) as srv:
        yield srv, engine


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0].base_url, api_key="unused", max_retries=0)


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_completion_matches_direct_generation(client, server):
    engine = server[1]
    resp = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=16)
    direct = generate_chat(engine.model, engine.tokenizer, [QUESTION], max_new_tokens=16)[0]
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == direct.text
    assert resp.choices[0].finish_reason == direct.finish_reason
    assert resp.usage.prompt_tokens == direct.prompt_tokens == engine.count_prompt_tokens(QUESTION)
    assert resp.usage.completion_tokens == direct.completion_tokens
    assert resp.usage.total_tokens == direct.prompt_tokens + direct.completion_tokens


def test_max_tokens_is_capped_by_the_server(client):
    resp = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=500)
    assert resp.usage.completion_tokens <= 24


def test_streaming_concatenates_to_the_full_answer(client):
    full = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=16)
    stream = client.chat.completions.create(model="tiny", messages=QUESTION, temperature=0, max_tokens=16, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert exc.value.body["code"] == "model_not_found"


def test_invalid_request_is_400_with_openai_error_shape(client, server):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[])
    r = httpx.post(f"{server[0].base_url}/chat/completions", json={"model": "tiny", "messages": [], "n": 1})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == "messages"


def test_stop_strings():
    assert cut_at_stop("abc. def", ["."]) == ("abc", True)
    assert cut_at_stop("abc", ["x", ""]) == ("abc", False)
