import pytest

from tunewright.core.errors import UserError
from tunewright.core.records import to_conversation
from tunewright.curate.config import SourceConfig
from tunewright.curate.decontaminate import Decontaminate, NgramIndex
from tunewright.curate.dedup.exact import ExactDedup
from tunewright.curate.filters.empty import DropEmpty
from tunewright.curate.pipeline import Quarantine, run_steps
from tunewright.curate.sources import admit_sources
from tunewright.curate.split import split_records


def conv(i, prompt="Q", answer="A"):
    return to_conversation({"prompt": prompt, "response": answer}, "s", f"r{i}")


def test_drop_empty_quarantines_with_reason():
    q = Quarantine()
    kept = run_steps([conv(1), conv(2, answer="  "), conv(3, prompt="")], [DropEmpty()], q)
    assert [c.id for c in kept] == ["r1"]
    assert [(e["id"], e["reason"]) for e in q.entries["drop_empty"]] == [
        ("r2", "empty assistant message"),
        ("r3", "empty user message"),
    ]


def test_exact_dedup_normalises_case_and_whitespace_and_names_the_kept_record():
    q = Quarantine()
    step = ExactDedup()
    records = [
        conv(1, "Is it  stale?"),
        conv(2, "is it stale? "),
        conv(3, "Is it fresh?"),
        conv(4, "Is it stale?", "B"),
    ]
    kept = run_steps(records, [step], q)
    assert [c.id for c in kept] == ["r1", "r3", "r4"]
    assert q.entries["exact_dedup"][0]["reason"] == "duplicate of r1"
    assert (step.stats.records_in, step.stats.records_out) == (4, 3)


def test_decontaminate_finds_eval_ngrams():
    index = NgramIndex(n=5, min_words=3)
    index.add("The table finance.ledger is stale, what should I do first?", "golden#G1")
    index.add("Hi there", "golden#tiny")  # too short to index
    step = Decontaminate(index)
    q = Quarantine()
    records = [
        conv(1, "Urgent: the TABLE finance ledger is stale! What should I do first today?"),
        conv(2, "The table sandbox.events is stale."),
        conv(3, "hi there"),
    ]
    kept = run_steps(records, [step], q)
    assert [c.id for c in kept] == ["r2", "r3"]
    assert q.entries["decontaminate"][0]["reason"] == "contains 5-gram(s) of eval item(s) golden#G1"
    assert step.matches == {"r1": ["golden#G1"]}


def test_short_eval_prompts_match_whole():
    index = NgramIndex(n=13, min_words=3)
    index.add("Is finance.ledger stale?", "g#1")
    assert index.matches("so: is finance ledger stale? tell me") == {"g#1"}
    assert index.matches("is finance stale") == set()


def test_split_is_deterministic_sized_and_order_independent():
    records = [conv(i, f"q{i}") for i in range(200)]
    a = split_records(records, 0.1, 0.15, seed=42)
    b = split_records(list(reversed(records)), 0.1, 0.15, seed=42)
    assert {k: len(v) for k, v in a.items()} == {"train": 150, "validation": 20, "test": 30}
    for name in a:
        assert {c.id for c in a[name]} == {c.id for c in b[name]}
    ids = [c.id for part in a.values() for c in part]
    assert sorted(ids) == sorted(c.id for c in records)
    other = split_records(records, 0.1, 0.15, seed=7)
    assert {c.id for c in other["test"]} != {c.id for c in a["test"]}


def test_license_gate_errors_or_skips():
    ok = SourceConfig(name="a", path="a.jsonl", license="MIT")
    gpl = SourceConfig(name="b", path="b", license="GPL-3.0")
    closed = SourceConfig(name="c", path="c", license="MIT", allow_training=False)
    assert admit_sources([ok], ["MIT"], "error") == {}
    with pytest.raises(UserError, match=r"source 'b': license 'GPL-3\.0' is not in allowed_licenses"):
        admit_sources([ok, gpl], ["MIT"], "error")
    with pytest.raises(UserError, match="allow_training: false"):
        admit_sources([closed], ["MIT"], "error")
    skipped = admit_sources([ok, gpl, closed], ["MIT"], "skip")
    assert set(skipped) == {"b", "c"}
