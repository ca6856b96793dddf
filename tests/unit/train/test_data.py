import copy
import re

import pytest

from tunewright.core.modeling import load_tokenizer
from tunewright.core.records import to_conversation
from tunewright.train.data import IGNORE, Skip, collate, tokenize_completion, tokenize_conversation, tokenize_document


@pytest.fixture(scope="module")
def tok(tiny_base):
    return load_tokenizer(tiny_base)


def labelled_text(tok, ex):
    return tok.decode([t for t in ex.labels if t != IGNORE], skip_special_tokens=False)


def test_only_assistant_tokens_and_eos_are_labels(tok):
    conv = to_conversation(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "The table is stale."},
                {"role": "assistant", "content": "Check the freshness monitor."},
            ]
        },
        "s",
        "1",
    )
    ex = tokenize_conversation(tok, conv, 256)
    assert labelled_text(tok, ex) == "Check the freshness monitor.<|im_end|>"
    assert ex.labels[-2] == tok.eos_token_id
    assert tok.pad_token_id != tok.eos_token_id
    first = next(i for i, t in enumerate(ex.labels) if t != IGNORE)
    assert tok.decode(ex.input_ids[:first]).endswith("<|im_start|>assistant\n")


def multi_turn():
    return to_conversation(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "two"},
                {"role": "assistant", "content": "second answer"},
            ]
        },
        "s",
        "1",
    )


def test_every_assistant_turn_is_labelled_in_multi_turn(tok):
    ex = tokenize_conversation(tok, multi_turn(), 256)
    assert labelled_text(tok, ex) == "first answer<|im_end|>second answer<|im_end|>"


def test_too_long_is_skipped_or_truncated(tok):
    conv = to_conversation({"prompt": "stale table", "response": "check the monitor " * 40}, "s", "1")
    with pytest.raises(Skip, match="too_long"):
        tokenize_conversation(tok, conv, 64)
    ex = tokenize_conversation(tok, conv, 64, too_long="truncate")
    assert ex.truncated and len(ex.input_ids) == 64 and ex.targets > 0
    long_prompt = to_conversation({"prompt": "word " * 300, "response": "ok"}, "s", "2")
    with pytest.raises(Skip, match="too_long"):
        tokenize_conversation(tok, long_prompt, 64, too_long="truncate")


def test_loss_on_last_and_all(tok):
    last = tokenize_conversation(tok, multi_turn(), 256, loss_on="last")
    assert labelled_text(tok, last) == "second answer<|im_end|>"
    every = tokenize_conversation(tok, multi_turn(), 256, loss_on="all")
    assert every.labels == every.input_ids


@pytest.mark.parametrize("marked", [False, True])
def test_templates_with_and_without_generation_markers(tok, marked):
    assert "{% generation %}" not in tok.chat_template
    start, end = ("{% generation %}", "{% endgeneration %}") if marked else ("", "")
    tok2 = copy.deepcopy(tok)
    tok2.chat_template = (
        "{% for m in messages %}### {{ m.role }}: {% if m.role == 'assistant' %}" + start + "{{ m.content }}"
        "{{ eos_token }}" + end + "{% else %}{{ m.content }}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}### assistant: {% endif %}"
    )
    ex = tokenize_conversation(tok2, multi_turn(), 256)
    # the generation prompt's trailing space is trained where the tokenizer merges it into the answer's first token
    assert re.fullmatch(r" ?first answer<\|im_end\|> ?second answer<\|im_end\|>", labelled_text(tok2, ex))


def test_completion_trains_completion_and_eos(tok):
    ex = tokenize_completion(tok, "The ledger is stale.", " Check the monitor.", "c1", 256)
    assert labelled_text(tok, ex) == " Check the monitor.<|im_end|>"
    assert ex.input_ids[-1] == tok.eos_token_id


def test_pretrain_documents_are_cut_into_blocks(tok):
    text = "The freshness monitor checks every governed table each hour. " * 20
    blocks = list(tokenize_document(tok, text, "d1", 64))
    total = len(tok(text)["input_ids"]) + 1
    assert [len(b.input_ids) for b in blocks[:-1]] == [64] * (len(blocks) - 1)
    assert sum(len(b.input_ids) for b in blocks) == total
    assert all(b.labels == b.input_ids for b in blocks)
    assert blocks[-1].input_ids[-1] == tok.eos_token_id


def test_collate_pads_right_with_ignored_labels(tok):
    a = tokenize_conversation(tok, to_conversation({"prompt": "a", "response": "b"}, "s", "1"), 256)
    b = tokenize_conversation(tok, to_conversation({"prompt": "a longer prompt", "response": "b c d"}, "s", "2"), 256)
    batch = collate([a, b], tok.pad_token_id)
    n = len(a.input_ids)
    assert batch["input_ids"].shape[1] == len(b.input_ids)
    assert batch["attention_mask"][0, n:].sum() == 0
    assert (batch["labels"][0, n:] == IGNORE).all()
    assert (batch["input_ids"][0, n:] == tok.pad_token_id).all()


def test_tool_calls_are_trained_and_tools_and_results_are_context(tok):
    """The assistant learns to make the call and to answer from the result; the tool listing and the result
    itself are context. The text trained is the text served (chat.render, Hermes format)."""
    tool = {
        "type": "function",
        "function": {
            "name": "check_freshness",
            "parameters": {"type": "object", "properties": {"t": {"type": "string"}}},
        },
    }
    call = {"type": "function", "function": {"name": "check_freshness", "arguments": '{"t": "hr.payroll"}'}}
    conv = to_conversation(
        {
            "tools": [tool],
            "messages": [
                {"role": "user", "content": "Is hr.payroll fresh?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": '{"hours": 30}'},
                {"role": "assistant", "content": "No: 30 hours."},
            ],
        },
        "s",
        "1",
    )
    ex = tokenize_conversation(tok, conv, 1024)
    trained = labelled_text(tok, ex)
    assert trained == (
        '<tool_call>\n{"name": "check_freshness", "arguments": {"t": "hr.payroll"}}\n</tool_call><|im_end|>'
        "No: 30 hours.<|im_end|>"
    )
    whole = tok.decode(ex.input_ids)
    assert "<tools>" in whole and '<tool_response>\n{"hours": 30}\n</tool_response>' in whole
