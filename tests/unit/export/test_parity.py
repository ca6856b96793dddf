"""Parity compares what programs read: calls and JSON objects, besides text."""

import json

from tunewright.core.tools import call_text, written_reply
from tunewright.demo import domain
from tunewright.demo.sample_data import write_sample_data
from tunewright.export.parity import Golden, compare_answers, kinds, same_answer
from tunewright.export.stage import golden_prompts

CALL = call_text("open_incident", {"table": "hr.payroll", "kind": "failed", "severity": "high", "owner": "x"})


def test_answers_are_the_same_when_a_program_would_read_them_the_same():
    parsed = {"content": None, "tool_calls": [{"function": {"name": "open_incident", "arguments": "{}"}}]}
    spaced = CALL.replace('"arguments": {', '"arguments":   {')
    assert same_answer(CALL, spaced)  # another runtime's calls: the same function and arguments
    assert not same_answer(CALL, written_reply(parsed))  # other arguments
    assert not same_answer(CALL, "Opened.\n" + CALL)  # the same call after other content
    assert same_answer('{"a": 1, "b": [true]}', '{"a":1,"b":[true]}')
    assert not same_answer('{"a": 1}', '{"a": 1.5}')
    assert not same_answer("First step: x.", "First step:  x.")  # text stays text


def test_a_runtime_returning_parsed_calls_is_compared_by_calls_and_a_local_one_by_text():
    golden = Golden(["a", "b"], [[{"role": "user", "content": "q"}]] * 2, [domain.TOOLS, []])
    trained, other = [CALL, '{"x": 1}'], [CALL.replace(", ", ",  "), '{"x":1}']
    assert [d["id"] for d in compare_answers(golden, trained, other).diverged] == ["a", "b"]
    assert compare_answers(golden, trained, other, structured=True).passed
    assert kinds([*trained, "text"]) == {"calls": 1, "json": 1, "text": 1}


def test_golden_prompts_carry_the_tools_they_offer(tmp_path):
    golden = golden_prompts(write_sample_data(tmp_path)["golden"])
    offered = [(i, t) for i, t in zip(golden.ids, golden.tools, strict=True) if t]
    assert offered and all(t == domain.TOOLS for _, t in offered)
    lines = [json.loads(line) for line in (tmp_path / "eval" / "golden.jsonl").read_text().splitlines()]
    assert {row["source"] for row in lines} == {"runbook_chats", "ops_tool_calls", "alert_extractions"}
    assert len(offered) == sum(row["source"] == "ops_tool_calls" for row in lines)
    assert all(p[-1]["role"] == "user" for p in golden.prompts)
