import pytest

from tunewright.core.modeling import load_tokenizer
from tunewright.core.records import to_conversation
from tunewright.train.data import IGNORE, collate, tokenize_conversation


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


def test_every_assistant_turn_is_labelled_in_multi_turn(tok):
    conv = to_conversation(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "two"},
                {"role": "assistant", "content": "second answer"},
            ]
        },
        "s",
        "1",
    )
    ex = tokenize_conversation(tok, conv, 256)
    assert labelled_text(tok, ex) == "first answer<|im_end|>second answer<|im_end|>"


def test_too_long_is_none(tok):
    conv = to_conversation({"prompt": "word " * 300, "response": "ok"}, "s", "1")
    assert tokenize_conversation(tok, conv, 64) is None


def test_collate_pads_right_with_ignored_labels(tok):
    a = tokenize_conversation(tok, to_conversation({"prompt": "a", "response": "b"}, "s", "1"), 256)
    b = tokenize_conversation(tok, to_conversation({"prompt": "a longer prompt", "response": "b c d"}, "s", "2"), 256)
    batch = collate([a, b], tok.pad_token_id)
    n = len(a.input_ids)
    assert batch["input_ids"].shape[1] == len(b.input_ids)
    assert batch["attention_mask"][0, n:].sum() == 0
    assert (batch["labels"][0, n:] == IGNORE).all()
    assert (batch["input_ids"][0, n:] == tok.pad_token_id).all()
