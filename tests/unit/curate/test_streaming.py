"""Streaming pieces: the disk quarantine, the record spill, and worker processes."""

import json

from tunewright.core.records import to_conversation
from tunewright.curate.dedup.exact import ExactDedup
from tunewright.curate.filters.empty import DropEmpty
from tunewright.curate.parallel import segments, stream_steps
from tunewright.curate.pii import PiiStep
from tunewright.curate.pipeline import Quarantine
from tunewright.curate.spill import Spill
from tunewright.curate.steps import build_steps


def conv(i, response):
    return to_conversation({"prompt": f"question {i}?", "response": response}, "s", f"r{i}")


def test_quarantine_on_disk_keeps_everything_but_holds_only_examples(tmp_path):
    q = Quarantine(tmp_path / "q", keep=2)
    for i in range(5):
        q.add("filter", f"reason {i}", conv(i, "x"))
    q.add("pii", "pii redact: email x1", conv(9, "y"), action="modified")
    q.close()
    lines = (tmp_path / "q/filter.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in lines] == [f"reason {i}" for i in range(5)]
    assert len(q.entries["filter"]) == 2
    assert q.count() == 5 and q.count("modified") == 1
    assert q.by_step() == {"filter": 5, "pii": 1}


def test_spill_reads_back_in_order_more_than_once(tmp_path):
    records = [conv(i, f"answer {i}") for i in range(50)]
    with Spill(tmp_path) as spill:
        for r in records:
            spill.add(r)
        assert [r.id for r in spill] == [r.id for r in records]
        assert [r.messages[1].content for r in spill] == [f"answer {i}" for i in range(50)]
    assert list(tmp_path.iterdir()) == []


def test_segments_group_per_record_steps_around_stateful_ones():
    steps = [DropEmpty(), PiiStep(), ExactDedup(), DropEmpty()]
    assert [[s.name for s in g] for g in segments(steps)] == [["drop_empty", "pii"], ["exact_dedup"], ["drop_empty"]]


def test_worker_processes_give_the_same_records_quarantine_and_counts():
    def run(workers):
        records = [conv(i, "" if i % 7 == 0 else f"mail me at user{i % 5}@example.com") for i in range(300)]
        steps = [DropEmpty(), PiiStep(), ExactDedup()]
        q = Quarantine()
        kept = [r.to_dict() for r in stream_steps(records, steps, q, workers=workers, chunk=16)]
        stats = [(s.stats.records_in, s.stats.records_out, dict(s.stats.reasons)) for s in steps]
        return kept, q.entries, stats, dict(steps[1].counts)

    assert run(2) == run(1)


def test_build_steps_pickle_for_workers(workspace):
    import pickle

    from tunewright.core.config import load_config
    from tunewright.curate.config import CurateConfig

    cfg = load_config(workspace / "configs/curate.yaml", CurateConfig, [])
    steps = [s for s in build_steps(cfg, workspace) if s.per_record]
    assert [type(s).__name__ for s in pickle.loads(pickle.dumps(steps))] == [type(s).__name__ for s in steps]
