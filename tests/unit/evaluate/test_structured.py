"""Structured-answer scores: JSON validity and fields against a reference object, tool calls against the
reference's calls."""

import json

import pytest
from transformers import AutoModelForCausalLM

from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_tokenizer
from tunewright.core.records import RecordError
from tunewright.core.tools import call_text, parse_calls, written_reply
from tunewright.engine import Engine, EngineConfig
from tunewright.evaluate.config import EndpointConfig, JsonScorer, TaskConfig, ToolCallsScorer
from tunewright.evaluate.items import parse_item
from tunewright.evaluate.scorers import metric_names, normalize
from tunewright.evaluate.structured import json_metrics, tool_call_metrics, value_at
from tunewright.evaluate.targets import EndpointTarget, LocalTarget
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.config import ServeConfig
from tunewright.serve.service import Served

SCHEMA = {"type": "object", "properties": {"severity": {"enum": ["low", "high"]}}, "required": ["severity"]}


def values(metrics):
    return {m.name: (None if m.value != m.value else m.value) for m in metrics}


def test_json_validity_fields_and_nested_paths():
    reference = json.dumps({"severity": "high", "owner": {"team": "Data Platform"}, "tables": ["a.b", "c.d"]})
    answers = [
        '```json\n{"severity": "high", "owner": {"team": "data  platform"}, "tables": ["a.b"]}\n```',  # fenced
        '{"severity": "urgent", "owner": {"team": "finance"}, "tables": ["x", "c.d"]}',  # valid JSON, bad enum
        "severity: high",  # not JSON
    ]
    fields = ["severity", "owner.team", "tables[1]"]
    got = values(
        json_metrics(answers, [reference] * 3, SCHEMA, fields, lambda s: normalize(s, ["lower", "whitespace"]))
    )
    assert got["json_valid"] == pytest.approx(1 / 3)
    assert got["json_severity"] == pytest.approx(1 / 3)
    assert got["json_owner_team"] == pytest.approx(1 / 3)  # normalised: "data  platform" == "Data Platform"
    assert got["json_tables_1"] == pytest.approx(1 / 3)  # only the second answer has tables[1] == "c.d"
    assert got["json_field_accuracy"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)


def test_a_field_the_reference_lacks_is_not_counted_and_types_must_agree():
    refs = [json.dumps({"rows": 3}), json.dumps({"other": 1})]
    got = values(json_metrics(['{"rows": "3"}', '{"rows": 3}'], refs, None, ["rows"], str.lower))
    assert got["json_rows"] == 0.0  # "3" is not 3; the second item does not count
    assert value_at({"a": [{"b": 2}]}, "a[0].b") == 2


def test_tool_call_metrics_names_exact_arguments_and_no_call():
    ref = call_text("open_incident", {"table": "a.b", "severity": "high"})
    answers = [
        ref,  # exactly right
        call_text("open_incident", {"table": "a.b", "severity": "low"}),  # right function, one argument wrong
        call_text("check_freshness", {"table": "a.b"}),  # wrong function
        "I will open an incident.",  # no call where one was wanted
        "Nothing to do.",  # rightly no call
        call_text("check_freshness", {"table": "x"}),  # a call where none was wanted
    ]
    refs = [ref, ref, ref, ref, "All good.", "All good."]
    got = values(tool_call_metrics(answers, refs))
    assert got["tool_name_accuracy"] == 0.5
    assert got["tool_call_exact"] == 0.25
    assert got["tool_args_f1"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)
    assert got["no_call_accuracy"] == 0.5


TOOL = {
    "type": "function",
    "function": {
        "name": "open_incident",
        "parameters": {
            "type": "object",
            "properties": {"severity": {"enum": ["low", "high"]}},
            "required": ["severity"],
            "additionalProperties": False,
        },
    },
}


def tool_item_row(arguments='{"severity": "high"}'):
    call = {"type": "function", "function": {"name": "open_incident", "arguments": arguments}}
    return {
        "id": "t1",
        "tools": [TOOL],
        "messages": [
            {"role": "user", "content": "hr.payroll is 30 hours stale."},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ],
    }


def test_tool_items_carry_their_tools_and_the_reference_call():
    task = TaskConfig(name="tools", data="x.jsonl", scorers=[ToolCallsScorer(type="tool_calls")])
    item = parse_item(tool_item_row(), task, "tools:1")
    assert item.tools == [TOOL] and item.reference == call_text("open_incident", {"severity": "high"})
    assert metric_names(task, [item]) == ["tool_name_accuracy", "tool_call_exact", "tool_args_f1", "no_call_accuracy"]
    with pytest.raises(RecordError, match="do not match its parameters"):
        parse_item(tool_item_row('{"severity": "mid"}'), task, "tools:1")
    with pytest.raises(RecordError, match="scorer 'tool_calls' needs `tools` on every item"):
        parse_item({"prompt": "q", "reference": "a"}, task, "tools:2")
    json_task = TaskConfig(name="j", data="x.jsonl", scorers=[JsonScorer(type="json", fields=["owner.team", "a[0]"])])
    assert metric_names(json_task, []) == ["json_valid", "json_owner_team", "json_a_0", "json_field_accuracy"]
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        JsonScorer(type="json", json_schema={"type": "strin"})


def test_local_and_endpoint_targets_answer_tool_items_alike(tiny_base):
    """The local engine and tunewright's server (through the endpoint target) give the same greedy answers to a
    tool item, calls included, so a tool task scores the same either way."""
    chats = [[{"role": "user", "content": f"Table t{i} is stale."}] for i in range(3)]
    local = LocalTarget(ModelSource(label="tiny", base=str(tiny_base)))
    try:
        answers = local.generate(chats, 120, tools=[[TOOL]] * 3)
        plain = local.generate(chats[:1], 16)
    finally:
        local.close()
    for answer in answers:
        content, calls = parse_calls(answer)
        assert (calls and content is None and {c.name for c in calls} == {"open_incident"}) or not answer.startswith(
            "<"
        )
    app = create_app(lambda: _engine(tiny_base), ServeConfig(max_new_tokens=256))
    with BackgroundServer(app) as server:
        endpoint = EndpointTarget(server.base_url, "tiny", EndpointConfig())
        try:
            assert endpoint.generate(chats, 120, tools=[[TOOL]] * 3) == answers
            assert endpoint.generate(chats[:1], 16) == plain
        finally:
            endpoint.close()


def test_items_with_a_json_response_format_are_answered_under_it_locally_and_through_a_server(tiny_base):
    """A replayed request that asked for JSON is answered under its schema, by the local engine and by the server
    (the endpoint target sends the format), with the same greedy answers."""
    schema = {"type": "object", "properties": {"severity": {"enum": ["low", "high"]}}, "required": ["severity"]}
    schema["additionalProperties"] = False
    fmt = {"type": "json_schema", "json_schema": {"name": "alert", "schema": schema}}
    task = TaskConfig(name="j", data="x.jsonl", scorers=[JsonScorer(type="json", json_schema=schema)])
    item = parse_item({"prompt": "Read the alert: disk full.", "response_format": fmt}, task, "j:1")
    assert item.response_format == fmt
    with pytest.raises(RecordError, match="response_format"):
        parse_item({"prompt": "q", "response_format": {"type": "yaml"}}, task, "j:2")
    chats = [[{"role": "user", "content": f"Read the alert: disk {i} full."}] for i in range(2)]
    local = LocalTarget(ModelSource(label="tiny", base=str(tiny_base)))
    try:
        answers = local.generate(chats, 40, formats=[fmt, {"type": "json_object"}])
    finally:
        local.close()
    assert json.loads(answers[0])["severity"] in ("low", "high")
    assert answers[1].startswith("{")  # any JSON object; the tiny model may not close it within 40 tokens
    app = create_app(lambda: _engine(tiny_base), ServeConfig(max_new_tokens=256))
    with BackgroundServer(app) as server:
        endpoint = EndpointTarget(server.base_url, "tiny", EndpointConfig())
        try:
            assert endpoint.generate(chats, 40, formats=[fmt, {"type": "json_object"}]) == answers
        finally:
            endpoint.close()


def _engine(tiny_base):
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    return Engine(model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=4, max_model_len=1024)), Served(
        "tiny", str(tiny_base)
    )


def test_an_endpoints_calls_are_written_as_a_model_writes_them():
    good = {"type": "function", "function": {"name": "open_incident", "arguments": '{"severity": "high"}'}}
    assert written_reply({"content": None, "tool_calls": [good]}) == call_text("open_incident", {"severity": "high"})
    assert written_reply({"content": "On it.", "tool_calls": [good]}) == "On it.\n" + call_text(
        "open_incident", {"severity": "high"}
    )
    broken = {
        "content": None,
        "tool_calls": [{"function": {"name": "open_incident", "arguments": '"{severity: high"'}}],
    }
    assert parse_calls(written_reply(broken)) == (written_reply(broken), [])  # counted as no valid call
