import pytest

from tunewright.core.records import (
    RecordError,
    conversation_from_dict,
    to_conversation,
    to_preference_pair,
)


def test_prompt_response_becomes_conversation():
    c = to_conversation({"prompt": "Q?", "response": "A.", "system": "Be brief."}, "src", "src:1")
    assert [(m.role, m.content) for m in c.messages] == [("system", "Be brief."), ("user", "Q?"), ("assistant", "A.")]
    assert c.id == "src:1"
    assert c.source == "src"
    assert c.final_answer() == "A."
    assert [m.role for m in c.prompt_messages()] == ["system", "user"]


def test_messages_form_keeps_id_and_meta():
    obj = {
        "id": "x9",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        "meta": {"k": 1},
    }
    c = to_conversation(obj, "s", "s:3")
    assert c.id == "x9"
    assert c.meta == {"k": 1}
    assert conversation_from_dict(c.to_dict()) == c


def test_column_mapping():
    c = to_conversation({"question": "Q", "answer": "A"}, "s", "1", {"prompt": "question", "response": "answer"})
    assert c.final_answer() == "A"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "expected a JSON object"),
        ({"text": "x"}, "expected 'messages' or 'prompt'"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no assistant turn"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "no user turn"),
        ({"messages": [{"role": "robot", "content": "q"}]}, "role must be one of"),
        ({"messages": [{"role": "user", "content": 3}]}, "must be a string"),
        ({"messages": []}, "non-empty list"),
        ({"prompt": "q", "response": None}, "response must be a string"),
    ],
)
def test_wrong_shapes_raise_record_error(obj, message):
    with pytest.raises(RecordError, match=message):
        to_conversation(obj, "s", "1")


def test_preference_pair_accepts_plain_strings():
    p = to_preference_pair({"prompt": "Q", "chosen": "good", "rejected": "bad"}, "s", "1")
    assert p.prompt[0].role == "user"
    assert p.chosen[0].role == "assistant"
    assert p.rejected[0].content == "bad"
    with pytest.raises(RecordError, match="missing rejected"):
        to_preference_pair({"prompt": "Q", "chosen": "good"}, "s", "1")
