import pytest
from curate_helpers import run_steps, split_records

from tunewright.core.errors import UserError
from tunewright.core.records import to_conversation
from tunewright.curate.config import SourceConfig
from tunewright.curate.decontaminate import Decontaminate, EvalNgramScan, NgramIndex, tokens
from tunewright.curate.dedup.exact import ExactDedup
from tunewright.curate.filters.empty import DropEmpty
from tunewright.curate.pipeline import Quarantine
from tunewright.curate.sources import admit_sources


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


def decontaminate(index, records, max_matches=10):
    scan, step, q = EvalNgramScan(index), Decontaminate(index, max_matches), Quarantine()
    kept = run_steps(records, [scan, step], q)
    assert all("_eval_ngrams" not in r.meta for r in kept)
    return kept, step, q


def test_decontaminate_finds_eval_ngrams():
    index = NgramIndex(n=5, min_words=3)
    index.add("The table finance.ledger is stale, what should I do first?", "golden#G1")
    index.add("Hi there", "golden#tiny")  # too short to index
    records = [
        conv(1, "Urgent: the TABLE finance ledger is stale! What should I do first today?"),
        conv(2, "The table sandbox.events is stale."),
        conv(3, "hi there"),
    ]
    kept, step, q = decontaminate(index, records)
    assert [c.id for c in kept] == ["r2", "r3"]
    assert q.entries["decontaminate"][0]["reason"] == "contains 5-gram(s) of eval item(s) golden#G1"
    assert step.matches == {"r1": ["golden#G1"]}


TEMPLATE = "Hello team, I am writing to you about the data platform because something important happened:"
ISSUES = [
    "the nightly load of finance.ledger stopped after the schema of the vendor feed changed without notice",
    "dashboards built on sales.orders show numbers from last week although every upstream job reports success",
    "our retention job deleted partitions of hr.payroll that the auditors still need for the quarterly review",
]


def test_common_template_phrasing_is_ignored_but_planted_eval_copies_are_removed():
    index = NgramIndex(n=13, min_words=5)
    for i, issue in enumerate(ISSUES):
        index.add(f"{TEMPLATE} {issue}", f"eval.jsonl#E{i}")
    corpus = [
        conv(i, f"{TEMPLATE} ticket {i} is about table t{i} and job j{i} failing at step {i % 7}") for i in range(40)
    ]
    planted = [
        conv(100, f"{TEMPLATE} {ISSUES[0]}"),  # verbatim
        conv(101, f"{TEMPLATE.upper()} {ISSUES[1].replace(' ', '  ')}!!"),  # case and spacing
        conv(102, f"Hi all. {ISSUES[2].replace('quarterly', 'yearly')}"),  # another opening, one word changed
    ]
    kept, step, _ = decontaminate(index, corpus + planted)
    assert sorted(c.id for c in kept) == sorted(c.id for c in corpus)
    assert step.matches == {"r100": ["eval.jsonl#E0"], "r101": ["eval.jsonl#E1"], "r102": ["eval.jsonl#E2"]}
    assert step.ignored and all(n > 10 for n in step.ignored.values())
    assert all(gram in " ".join(tokens(TEMPLATE)) for gram in step.ignored)  # only the template's phrasing
    per_set = step.per_set()["eval.jsonl"]
    assert per_set["removed"] == 3 and per_set["ignored"] == len(step.ignored) and per_set["ngrams"] > 0

    kept, step, _ = decontaminate(index, corpus + planted, max_matches=None)  # no guard: the template removes all
    assert kept == [] and step.ignored == {}


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
