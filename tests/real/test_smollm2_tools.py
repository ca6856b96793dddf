"""SmolLM2 (a template that ignores tools) with tools and structured outputs: calls and objects always valid,
and the export's template renders tools as tunewright does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tunewright.core import chat
from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.service import Served

pytestmark = pytest.mark.real

OPEN_INCIDENT = {
    "type": "function",
    "function": {
        "name": "open_incident",
        "description": "Open an incident for a stale table",
        "parameters": {
            "type": "object",
            "properties": {
                "table": {"type": "string", "pattern": "^[a-z_]+[.][a-z_]+$", "maxLength": 40},
                "severity": {"enum": ["low", "medium", "high"]},
                "owner": {"type": "string", "maxLength": 40},
            },
            "required": ["table", "severity", "owner"],
            "additionalProperties": False,
        },
    },
}
QUESTION = [{"role": "user", "content": "The table sales.orders has not loaded for 30 hours. Open an incident."}]


class Incident(BaseModel):  # bounded, so every sampled answer ends within max_tokens
    table: str = Field(max_length=40)
    severity: Literal["low", "medium", "high"]
    hours_stale: int = Field(ge=0, le=1000)


@pytest.fixture(scope="module")
def client(smollm2: Path):
    source = ModelSource("smol", str(smollm2), dtype="float32")
    app = create_app(lambda: (Engine.from_source(source), Served("smol", source.base)))
    with BackgroundServer(app) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_required_tool_calls_are_valid_and_stream_as_they_are_answered(client):
    ask = {"model": "smol", "messages": QUESTION, "tools": [OPEN_INCIDENT], "tool_choice": "required"}
    ask |= {"parallel_tool_calls": False, "max_tokens": 120}
    sampled = client.chat.completions.create(**ask, temperature=1.0, n=6)
    for choice in sampled.choices:
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), OPEN_INCIDENT["function"]["parameters"])
    whole = client.chat.completions.create(**ask, temperature=0).choices[0].message.tool_calls[0]
    streamed = ""
    for chunk in client.chat.completions.create(**ask, temperature=0, stream=True):
        for part in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            streamed += part.function.arguments or ""
    assert streamed == whole.function.arguments


def test_parse_with_a_pydantic_model(client):
    resp = client.chat.completions.parse(
        model="smol", messages=QUESTION, response_format=Incident, temperature=1.0, n=8, max_tokens=160
    )
    assert all(c.finish_reason == "stop" and isinstance(c.message.parsed, Incident) for c in resp.choices)


def test_the_portable_template_renders_tools_as_tunewright_does(smollm2: Path):
    tokenizer = load_tokenizer(smollm2)
    call = {"id": "c", "type": "function", "function": {"name": "open_incident", "arguments": {"table": "a.b"}}}
    conversation = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]}]
    conversation.append({"role": "tool", "content": '{"incident": "INC-1"}'})
    ours = chat.render(tokenizer, conversation, True, [OPEN_INCIDENT])
    theirs = tokenizer.apply_chat_template(
        conversation, tools=[OPEN_INCIDENT], chat_template=chat.portable_template(tokenizer), tokenize=False,
        add_generation_prompt=True,
    )  # fmt: skip
    assert ours == theirs and "<tools>" in ours and "<tool_response>" in ours
