"""Conversations with tools, calls and results: OpenAI's shape and Hermes/ShareGPT's, normalised; bad calls refused
with the reason (the reader quarantines them with file and line)."""

import json

import pytest

from tunewright.core.records import RecordError, conversation_from_dict, to_conversation

OPEN_INCIDENT = {
    "type": "function",
    "function": {
        "name": "open_incident",
        "description": "Open an incident for a table",
        "parameters": {
            "type": "object",
            "properties": {"table": {"type": "string"}, "severity": {"enum": ["low", "high"]}},
            "required": ["table", "severity"],
            "additionalProperties": False,
        },
    },
}
ARGS = {"table": "hr.payroll", "severity": "high"}


def openai_record(arguments=json.dumps(ARGS), name="open_incident", tools=(OPEN_INCIDENT,)):
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return {
        "id": "r1",
        "tools": list(tools),
        "messages": [
            {"role": "user", "content": "hr.payroll is 30 hours stale."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"incident": "INC-7"}'},
            {"role": "assistant", "content": "Opened INC-7."},
        ],
    }


def test_openai_shape_keeps_tools_calls_and_results():
    conv = to_conversation(openai_record(), "s", "s:1")
    assert [t["function"]["name"] for t in conv.tools] == ["open_incident"]
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant"]
    call = conv.messages[1].tool_calls[0]
    assert call["function"] == {"name": "open_incident", "arguments": ARGS}  # arguments held as an object
    assert conv.messages[2].tool_call_id == "call_1"
    assert conversation_from_dict(conv.to_dict()) == conv
    assert "open_incident" in conv.messages[1].text() and "hr.payroll" in conv.messages[1].text()
    plain = to_conversation({"prompt": "q", "response": "a"}, "s", "s:2").to_dict()
    assert "tools" not in plain and all(set(m) == {"role", "content"} for m in plain["messages"])


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (openai_record(arguments='{"table": "x", '), "the arguments of a call to 'open_incident' are not JSON"),
        (openai_record(arguments='{"table": "x"}'), "'open_incident' do not match its parameters: 'severity'"),
        (openai_record(name="drop_table"), "calls 'drop_table', which is not one of the record's tools"),
        (openai_record(tools=()), "calls 'open_incident', which is not one of the record's tools (it declares none)"),
        (openai_record(tools=(OPEN_INCIDENT, OPEN_INCIDENT)), "two tools are named 'open_incident'"),
    ],
)
def test_a_bad_call_is_refused_with_the_reason(record, reason):
    with pytest.raises(RecordError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        to_conversation(record, "s", "s:1")


def test_hermes_sharegpt_form_is_normalised_to_the_same_conversation():
    system = "You are a function-calling assistant.\n<tools>\n" + json.dumps(OPEN_INCIDENT) + "\n</tools>"
    call = '<tool_call>\n{"name": "open_incident", "arguments": ' + json.dumps(ARGS) + "}\n</tool_call>"
    record = {
        "id": "r1",
        "conversations": [
            {"from": "system", "value": system},
            {"from": "human", "value": "hr.payroll is 30 hours stale."},
            {"from": "gpt", "value": call},
            {"from": "tool", "value": '<tool_response>\n{"incident": "INC-7"}\n</tool_response>'},
            {"from": "gpt", "value": "Opened INC-7."},
        ],
    }
    conv = to_conversation(record, "s", "s:1")
    expected = to_conversation(openai_record(), "s", "s:1")
    assert conv.tools == expected.tools
    assert [(m.role, m.content) for m in conv.messages[1:]] == [
        ("user", "hr.payroll is 30 hours stale."),
        ("assistant", ""),
        ("tool", '{"incident": "INC-7"}'),
        ("assistant", "Opened INC-7."),
    ]
    assert conv.messages[0] == type(conv.messages[0])("system", "You are a function-calling assistant.")
    assert conv.messages[2].tool_calls[0]["function"] == expected.messages[1].tool_calls[0]["function"]


def test_tools_given_as_json_text_as_some_datasets_store_them():
    record = openai_record()
    record["tools"] = json.dumps(record["tools"])
    assert to_conversation(record, "s", "s:1").tools == [OPEN_INCIDENT]


def test_glaive_function_calling_records_are_normalised():
    function = json.dumps(OPEN_INCIDENT["function"], indent=4)
    record = {
        "system": f"SYSTEM: You are a helpful assistant with access to the following functions. Use them if "
        f"required -\n{function}",
        "chat": "USER: hr.payroll is 30 hours stale. \n\n\nASSISTANT: <functioncall> "
        '{"name": "open_incident", "arguments": \'{"table": "hr.payroll", "severity": "high"}\'} <|endoftext|>'
        '\n\n\nFUNCTION RESPONSE: {"incident": "INC-7"}\n\n\nASSISTANT: Opened INC-7. <|endoftext|>\n\n\n',
    }
    conv = to_conversation(record, "s", "s:1")
    expected = to_conversation(openai_record(), "s", "s:1")
    assert conv.tools == expected.tools
    assert (
        conv.messages[0].content
        == "You are a helpful assistant with access to the following functions. Use them if required"
    )
    assert [(m.role, m.content) for m in conv.messages[1:]] == [(m.role, m.content) for m in expected.messages]
    assert conv.messages[2].tool_calls[0]["function"] == expected.messages[1].tool_calls[0]["function"]
    bad = dict(record, chat=record["chat"].replace('"severity": "high"', '"severity": "mid"'))
    with pytest.raises(RecordError, match="do not match its parameters"):
        to_conversation(bad, "s", "s:2")
    broken = dict(record, chat=record["chat"].replace("<functioncall> {", "<functioncall> {{"))
    with pytest.raises(RecordError, match="a <functioncall> is not JSON"):
        to_conversation(broken, "s", "s:3")
