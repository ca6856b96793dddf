"""Tool calls in Hermes' format: written into conversations, read back whole and as they stream, templates told
apart."""

import json

import pytest

from tunewright.core import chat
from tunewright.core.modeling import load_tokenizer
from tunewright.core.tools import (
    CallStream,
    ToolError,
    call_text,
    check_tools,
    parse_calls,
    tool_template,
    written,
)

FRESHNESS = {
    "type": "function",
    "function": {
        "name": "check_freshness",
        "description": "Hours since a table last loaded",
        "parameters": {"type": "object", "properties": {"table": {"type": "string"}}, "required": ["table"]},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "check_freshness", "arguments": '{"table": "a.b"}'}}
CONVERSATION = [
    {"role": "system", "content": "You run the data platform."},
    {"role": "user", "content": "Is a.b fresh?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"hours": 30}'},
]
HERMES_TEMPLATE = (  # Qwen2.5's way of writing tools and calls, cut down
    "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<|{{ m.role }}|>{% if m.tool_calls %}{% for c in m.tool_calls %}"
    '<tool_call>\n{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>'
    "{% endfor %}{% else %}{{ m.content }}{% endif %}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
OTHER_TEMPLATE = (  # a Llama-3.1-like template: calls as bare JSON with "parameters"
    "{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}"
    '{"name": "{{ c.function.name }}", "parameters": {{ c.function.arguments | tojson }}}'
    "{% endfor %}{% else %}{{ m.content }}{% endif %}{% endfor %}"
)


def test_tools_are_checked_by_name_and_schema():
    assert list(check_tools([FRESHNESS])) == ["check_freshness"]
    assert check_tools([{"type": "function", "function": {"name": "ping"}}])["ping"]["parameters"]["type"] == "object"
    with pytest.raises(ToolError, match="two tools are named 'check_freshness'"):
        check_tools([FRESHNESS, FRESHNESS])
    with pytest.raises(ToolError, match=r"tools\[0\] \(bad\): parameters are not a valid JSON Schema"):
        check_tools([{"type": "function", "function": {"name": "bad", "parameters": {"type": "obj"}}}])
    with pytest.raises(ToolError, match="is not 1-64 letters"):
        check_tools([{"type": "function", "function": {"name": "has space"}}])


def test_a_template_without_tools_gets_them_written_in_hermes_format(tiny_tokenizer):
    assert chat.tool_mode(tiny_tokenizer) == "written"
    messages = written(CONVERSATION, [FRESHNESS])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].startswith("You run the data platform.\n\n") and "<tools>" in messages[0]["content"]
    assert json.loads(messages[0]["content"].split("<tools>\n")[1].split("\n</tools>")[0]) == FRESHNESS
    assert messages[2]["content"] == call_text("check_freshness", {"table": "a.b"})
    assert messages[3]["content"] == '<tool_response>\n{"hours": 30}\n</tool_response>'
    text = chat.render(tiny_tokenizer, CONVERSATION, True, [FRESHNESS])
    assert '<tool_call>\n{"name": "check_freshness", "arguments": {"table": "a.b"}}\n</tool_call>' in text


def test_a_hermes_template_renders_tools_itself_and_another_format_is_refused(tiny_tokenizer):
    tiny_tokenizer = type(tiny_tokenizer).from_pretrained(tiny_tokenizer.name_or_path)
    tiny_tokenizer.chat_template = HERMES_TEMPLATE
    assert chat.tool_mode(tiny_tokenizer) == "native"
    text = chat.render(tiny_tokenizer, CONVERSATION, True, [FRESHNESS])
    assert text.startswith("<tools>") and '{"name": "check_freshness", "arguments": {"table": "a.b"}}' in text
    tiny_tokenizer.chat_template = OTHER_TEMPLATE
    with pytest.raises(ToolError, match="not Hermes' <tool_call> JSON"):
        chat.render(tiny_tokenizer, CONVERSATION, True, [FRESHNESS])


def test_calls_are_read_back_and_incomplete_ones_stay_text():
    two = call_text("check_freshness", {"table": "a.b"}) + "\n" + call_text("open", {"x": [1, {"y": "}"}]})
    content, calls = parse_calls(two)
    assert content is None and [(c.name, c.arguments) for c in calls] == [
        ("check_freshness", {"table": "a.b"}),
        ("open", {"x": [1, {"y": "}"}]}),
    ]
    assert len({c.id for c in calls}) == 2 and all(c.id.startswith("call_") for c in calls)
    part = json.loads(json.dumps(calls[0].as_message_part()))
    assert part["function"] == {"name": "check_freshness", "arguments": '{"table": "a.b"}'}
    cut = '<tool_call>\n{"name": "check_freshness", "arguments": {"tab'
    assert parse_calls(cut) == (cut, [])
    assert parse_calls("plain text") == ("plain text", [])


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_streamed_answer_gives_the_calls_of_the_whole_one(size):
    answer = call_text("check_freshness", {"table": "a.b"}) + "\n" + call_text("open", {"x": [1, {"y": "}\n"}]})
    reader, events = CallStream(), []
    pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
    for k, piece in enumerate(pieces):
        events += reader.feed(piece, final=k == len(pieces) - 1)
    starts = [v for kind, v in events if kind == "call"]
    assert [(i, name) for i, _, name in starts] == [(0, "check_freshness"), (1, "open")]
    arguments = ["".join(v[1] for kind, v in events if kind == "arguments" and v[0] == n) for n in (0, 1)]
    assert [json.loads(a) for a in arguments] == [c.arguments for c in parse_calls(answer)[1]]
    assert not [v for kind, v in events if kind == "content"]


def test_streamed_text_without_calls_is_all_content_held_back_only_while_it_may_open_one():
    reader = CallStream()
    assert reader.feed("The table is <") == [("content", "The table is ")]
    assert reader.feed("b>fresh") == [("content", "<b>fresh")]
    assert reader.feed(" <tool", final=True) == [("content", " <tool")]


@pytest.fixture
def tiny_tokenizer(tiny_base):
    return load_tokenizer(tiny_base)


@pytest.mark.parametrize("tools", [[FRESHNESS, {"type": "function", "function": {"name": "pïng"}}], None])
@pytest.mark.parametrize("prompt", [True, False])
def test_the_portable_template_renders_what_written_messages_render(tiny_tokenizer, tools, prompt):
    """Another runtime given the export's template (tools.tool_template) renders tools, calls and results as
    tunewright does, and plain conversations exactly as the model's own template."""
    call = {"id": "c2", "type": "function", "function": {"name": "check_freshness", "arguments": {"table": "é"}}}
    conversations = [
        CONVERSATION,
        [*CONVERSATION, {"role": "tool", "content": "second"}, {"role": "assistant", "content": "Done."}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Let me look.", "tool_calls": [call]}],
        [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "answer"}],
    ]
    template = tool_template(tiny_tokenizer.chat_template)
    for conversation in conversations:
        theirs = tiny_tokenizer.apply_chat_template(
            conversation, tools=tools, chat_template=template, tokenize=False, add_generation_prompt=prompt
        )
        assert theirs == chat.render(tiny_tokenizer, conversation, prompt, tools)
    assert chat.portable_template(tiny_tokenizer) == template
