"""Each heuristic filter at its NeMo Curator default threshold: on the bound keeps, past it drops."""

import pytest
from curate_helpers import run_steps

from tunewright.core.records import to_conversation
from tunewright.curate.filters.heuristic import (
    SPECS,
    build_filters,
    duplicate_ngrams,
    top_ngram,
)
from tunewright.curate.filters.quality import QualityFilter
from tunewright.curate.pipeline import Quarantine

NEMO = {f.name: f for f in build_filters("nemo", {}, [])}


def keeps(name, text):
    return NEMO[name].check(text)[0]


def test_word_count_bounds():
    assert keeps("word_count", " ".join(["word"] * 50))
    assert not keeps("word_count", " ".join(["word"] * 49))


def test_mean_word_length_bounds():
    assert keeps("mean_word_length", "abc abc abc")
    assert not keeps("mean_word_length", "abc abc ab")  # 8/3 < 3
    assert keeps("mean_word_length", "abcdefghij")  # exactly 10
    assert not keeps("mean_word_length", "abcdefghijk")


@pytest.mark.parametrize(
    ("name", "at_bound", "past_bound"),
    [
        ("non_alpha_numeric", "abc#", "ab##"),  # 1/4 = 0.25 keeps; 2/4 drops
        ("numbers", "a" * 17 + "123", "a" * 16 + "1234"),  # 3/20 = 0.15; 4/20
        ("white_space", "abc ", "ab  "),  # 1/4 = 0.25; 2/4
        ("parentheses", "a" * 9 + "(", "a" * 8 + "()"),  # 1/10; 2/10
    ],
)
def test_ratio_filters(name, at_bound, past_bound):
    assert keeps(name, at_bound)
    assert not keeps(name, past_bound)


def test_urls_ratio():
    url = "https://ex.am"  # 13 chars
    assert keeps("urls", url + " " + "x" * 51)  # 13/65 = 0.2
    assert not keeps("urls", url + " " + "x" * 50)


def test_repetition_filters():
    unique7 = "\n".join(["a", "b", "c", "d", "e", "f", "g", "a", "a", "a"])  # 7 unique of 10
    unique6 = "\n".join(["a", "b", "c", "d", "e", "f", "a", "a", "a", "a"])
    assert keeps("repeated_lines", unique7)
    assert not keeps("repeated_lines", unique6)
    assert not keeps("repeated_paragraphs", "x\n\nx\n\nx")


def test_common_words_boilerplate_bullets():
    assert keeps("common_words", "the cat and dog")
    assert not keeps("common_words", "The cat, and dog")  # case and punctuation count as NeMo does
    assert not keeps("boilerplate", "Lorem ipsum dolor sit amet")
    assert keeps("boilerplate", "a\n\nb\n\nc\n\nd\n\nsee our privacy policy")  # 1/5 = 0.2
    assert not keeps("boilerplate", "a\n\nread the terms of use")  # 1/2
    bullets9 = "\n".join(["• item"] * 9 + ["plain"])
    assert keeps("bullets", bullets9)
    assert not keeps("bullets", "\n".join(["• item"] * 10))


def test_ngram_scores_follow_nemo_formulas():
    text = "a b a b c"
    assert top_ngram(text, 2) == pytest.approx((9 - len(text.replace("a b", ""))) / 9)
    assert top_ngram("one", 2) == 1.0
    assert duplicate_ngrams("x y z x y z", 3) == pytest.approx((3 + 2 + 3 + 2) / 11)
    assert duplicate_ngrams("x y z w", 3) == 0.0


def test_presets_and_overrides():
    sft = {f.name: f for f in build_filters("sft", {"urls": {"max": 0.1}}, ["bullets"])}
    assert sft["word_count"].min == 1
    assert sft["urls"].max == 0.1
    assert "bullets" not in sft and "common_words" not in sft
    assert sft["top_2gram"].check("short answer")[0]  # n-gram filters skip short texts in the sft preset
    with pytest.raises(ValueError, match="unknown heuristic filter"):
        build_filters("nemo", {"nope": {"max": 1}}, [])
    assert set(SPECS) >= {"word_count", "duplicate_10gram", "words_with_letters"}


def test_quality_step_reads_assistant_text_and_names_the_filter():
    good = to_conversation({"prompt": "lorem ipsum?", "response": "Check the monitor first."}, "s", "ok")
    bad = to_conversation({"prompt": "q", "response": "Lorem ipsum dolor sit amet."}, "s", "bad")
    q = Quarantine()
    kept = run_steps([good, bad], [QualityFilter(build_filters("sft", {}, []))], q)
    assert [r.id for r in kept] == ["ok"]
    assert q.entries["quality"][0]["reason"] == "boilerplate: share of boilerplate paragraphs 1 > max 0.4"


def test_a_below_minimum_reason_says_what_was_measured():
    repeats = to_conversation({"prompt": "docs?", "response": "see\nsee\nsee\nsee\nsee\nsee"}, "s", "r")
    q = Quarantine()
    assert run_steps([repeats], [QualityFilter(build_filters("sft", {}, []))], q) == []
    assert q.entries["quality"][0]["reason"] == "repeated_lines: share of unique lines 0.1667 < min 0.5"
