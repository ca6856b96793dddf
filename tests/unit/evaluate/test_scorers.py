import json

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sklearn.metrics import f1_score

from tunewright.evaluate.config import Assertion, RefusalScorer, TaskConfig
from tunewright.evaluate.items import Item
from tunewright.evaluate.scorers import (
    check,
    metric_names,
    nll_metrics,
    normalize,
    preference_metrics,
    refused,
    score_answers,
    token_f1,
)

REF = "First step: check the monitor.\nThen: rerun the load.\nEscalate: x is governed, so yes; notify."
FIELDS = {"first_step": r"First step: ([^\n]+?)\.?(?:\n|$)", "escalate": r"so (yes|no)"}
FORMAT = r"^First step: [^\n]+\nThen: [^\n]+\nEscalate: [^\n]+ so (yes|no); [^\n]+\.$"


def task(*scorers, **extra):
    return TaskConfig(name="t", data="x.jsonl", scorers=list(scorers), **extra)


def items(refs):
    return [Item(str(i), [{"role": "user", "content": "q"}], r) for i, r in enumerate(refs)]


def by_name(metrics):
    return {m.name: m for m in metrics}


def test_token_f1_known_values_and_edges():
    assert token_f1("a b c", "a b c") == 1.0
    assert token_f1("a b", "c d") == 0.0
    assert token_f1("a b c d", "a b") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("", "a") == 0.0
    assert token_f1("Größe über", "größe ÜBER") == 1.0  # Unicode words, case-folded


def test_exact_match_normalisations():
    assert normalize("  The  Cat, sat! ", ["lower", "punctuation", "articles", "whitespace"]) == "cat sat"
    t = task({"type": "exact_match", "normalize": ["lower", "whitespace"]})
    m = by_name(score_answers(t, items(["Yes  please", "no"]), ["yes please", "no."], None))
    assert m["exact_match"].per_item == [1.0, 0.0]


def test_format_and_fields_per_item():
    answers = [
        REF,
        "First step: check the monitor.\nThen: wait.\nEscalate: x is not governed, so no; team.",
        "I think you should check the monitor.",
        "",
    ]
    t = task({"type": "format", "pattern": FORMAT}, {"type": "fields", "fields": FIELDS})
    m = by_name(score_answers(t, items([REF] * 4), answers, None))
    assert m["format_rate"].per_item == [1.0, 1.0, 0.0, 0.0]
    assert m["field_first_step"].per_item == [1.0, 1.0, 0.0, 0.0]
    assert m["field_escalate"].per_item == [1.0, 0.0, 0.0, 0.0]
    assert m["field_accuracy"].per_item == [1.0, 0.5, 0.0, 0.0]
    assert m["field_accuracy"].value == pytest.approx(0.375)


def test_rouge_handles_unicode_and_empty():
    t = task({"type": "rouge"})
    m = by_name(score_answers(t, items(["日本語 テスト です", "the cat sat"]), ["日本語 テスト", ""], None))
    assert m["rouge1"].per_item[0] == pytest.approx(0.8)  # 2 of 3 reference words, both answer words
    assert m["rouge1"].per_item[1] == 0.0 and m["rouge2"].per_item[1] == 0.0
    assert metric_names(t, []) == ["rouge1", "rouge2", "rougel"]


def test_bleu_and_chrf_are_sacrebleus_corpus_scores():
    refs = ["the cat sat on the mat", "a quick brown fox jumps", "über alles gut"]
    hyps = ["the cat sat on a mat", "quick brown fox jumped", "über alles"]
    m = by_name(score_answers(task({"type": "bleu"}, {"type": "chrf"}), items(refs), hyps, None))
    assert m["bleu"].value == pytest.approx(BLEU(effective_order=True).corpus_score(hyps, [refs]).score / 100)
    assert m["chrf"].value == pytest.approx(CHRF().corpus_score(hyps, [refs]).score / 100)


def test_classification_accuracy_and_macro_f1_match_sklearn():
    gold = ["yes", "no", "no", "maybe", "yes", "no"]
    answers = ["Label: yes", "Label: yes", "Label: no", "Label: no", "Label: YES", "nothing"]
    t = task({"type": "classification", "labels": ["yes", "no", "maybe"], "extract": r"Label: (\w+)"})
    m = by_name(score_answers(t, items(gold), answers, None))
    pred = ["yes", "yes", "no", "no", "yes", "none"]
    assert m["accuracy"].value == pytest.approx(3 / 6)
    expected = f1_score(gold, pred, labels=["yes", "no", "maybe"], average="macro", zero_division=0)
    assert m["macro_f1"].value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kind", "value", "answer", "expected"),
    [
        ("equals", "ok", " ok ", True),
        ("contains", "Step", "First Step", True),
        ("contains", "step", "First Step", False),
        ("icontains", "STEP", "first step", True),
        ("not-icontains", "as an ai", "As an AI, I", False),
        ("starts-with", "First", "  First step", True),
        ("regex", r"so (yes|no)", "so yes", True),
        ("not-regex", r"\d", "no digits", True),
        ("max-length", 5, "12345", True),
        ("max-length", 5, "123456", False),
        ("is-json", None, '{"a": 1, "extra": [1, 2]}', True),
        ("is-json", None, '```json\n{"a": 1}\n```', True),
        ("is-json", None, "{'a': 1}", False),
        ("is-json", None, "", False),
        ("contains", "ü", "Grüße", True),
        ("equals", "", "", True),
    ],
)
def test_assertions(kind, value, answer, expected):
    assert check(Assertion(type=kind, value=value), answer) is expected


def test_is_json_against_a_schema_allows_extra_keys():
    schema = {"type": "object", "required": ["table"], "properties": {"table": {"type": "string"}}}
    a = Assertion(type="is-json", value=schema)
    assert check(a, json.dumps({"table": "x", "extra": 1}))
    assert not check(a, json.dumps({"table": 3}))
    assert not check(a, json.dumps({"other": "x"}))


def test_bad_assertions_are_config_errors():
    with pytest.raises(ValueError, match="max-length needs an integer"):
        Assertion(type="max-length", value="ten")
    with pytest.raises(ValueError):
        Assertion(type="sounds-good", value="x")


def test_pass_rate_combines_task_and_item_assertions():
    t = TaskConfig(name="t", data="x", **{"assert": [{"type": "max-length", "value": 10}]})
    its = items([None, None, None])
    its[1].assertions = [Assertion(type="contains", value="b")]
    m = by_name(score_answers(t, its, ["short", "abc", "far too long answer"], None))
    assert m["pass_rate"].per_item == [1.0, 1.0, 0.0]
    its[1].assertions = [Assertion(type="contains", value="z")]
    assert by_name(score_answers(t, its, ["short", "abc", "x"], None))["pass_rate"].per_item == [1.0, 0.0, 1.0]


def test_refusal_detector_and_rates():
    s = RefusalScorer(type="refusal")
    assert refused("I'm sorry, but I can't help with that.", s)
    assert refused("I cannot provide the payroll data.", s)
    assert refused("I must decline.", s)
    assert not refused("First step: check the monitor.", s)
    assert not refused("You can't go wrong with checking the logs first.", s)
    its = items([None] * 4)
    for it, e in zip(its, ["refuse", "refuse", "answer", "answer"], strict=True):
        it.expect = e
    answers = ["I can't help with that.", "Sure, here it is.", "I'm sorry, I cannot assist.", "Check the logs."]
    m = by_name(score_answers(task({"type": "refusal"}), its, answers, None))
    assert m["refusal_rate"].value == 0.5 and m["over_refusal_rate"].value == 0.5
    assert m["refusal_rate"].per_item == [1.0, 0.0, None, None]
    assert m["over_refusal_rate"].higher_is_better is False
    custom = RefusalScorer(type="refusal", patterns=[r"^NOPE"])
    assert refused("nope, not today", custom) and not refused("I can't help", custom)


def test_similar_uses_minilm_embeddings():
    from tunewright.core.embeddings import Embedder

    embedder = Embedder()

    def sim(a, b):
        return [float(x) for x in (embedder(a) * embedder(b)).sum(1)]

    refs = ["Check the freshness monitor first.", "Check the freshness monitor first."]
    answers = ["First, look at the freshness monitor.", "Bananas are yellow."]
    m = by_name(score_answers(task({"type": "similar", "threshold": 0.6}), items(refs), answers, sim))
    assert m["similarity"].per_item[0] > 0.6 > m["similarity"].per_item[1]
    assert m["similar"].per_item == [1.0, 0.0]
    assert check(Assertion(type="similar", value="look at the freshness monitor", threshold=0.6), answers[0], sim)


def test_nll_and_perplexity_are_token_weighted():
    m = by_name(nll_metrics([(4.0, 2), (2.0, 8)]))
    assert m["nll"].value == pytest.approx(6 / 10)
    assert m["perplexity"].value == pytest.approx(np.exp(0.6))
    assert m["nll"].per_item == [2.0, 0.25]


def test_preference_accuracy_and_margin_come_from_the_answers_likelihoods():
    chosen, rejected = [(10.0, 5), (30.0, 9), (7.0, 4)], [(12.5, 5), (20.0, 9), (7.0, 4)]  # (NLL, tokens)
    m = by_name(preference_metrics(chosen, rejected))
    assert m["preference_accuracy"].per_item == [1.0, 0.0, 0.0]  # a tie is not a preference
    assert m["preference_margin"].per_item == [2.5, -10.0, 0.0]
    assert m["preference_accuracy"].value == pytest.approx(1 / 3) and m["preference_margin"].value == pytest.approx(
        -2.5
    )
