import json
import sqlite3
import subprocess
import sys

import pytest

from tunewright.core.errors import UserError
from tunewright.core.registry import ANY, REGISTRY, open_registry
from tunewright.core.runs import start_run


def make_chain(ws, versions=2):
    """curate -> train -> eval -> export v1..vN, as the stages record them."""
    with start_run(ws, "curate", ["curate"], {}) as curate:
        curate.results.update(kept=10)
    with start_run(ws, "train", ["train"], {}) as train:
        train.add_parent(curate.run_id)
    with start_run(ws, "eval", ["eval"], {}) as ev:
        ev.add_parent(train.run_id)
        ev.results.update(verdict="GO", model_run=train.run_id, model="m", baseline="base", config_hash="abc")
    for v in range(1, versions + 1):
        with start_run(ws, "export", ["export"], {}) as ex:
            ex.add_parent(train.run_id)
            ex.add_parent(ev.run_id)
            ex.results.update(
                name="m", version=f"v{v}", source_run=train.run_id, format="merged",
                export_dir=f"exports/m/v{v}", parity_passed=True,
            )  # fmt: skip
    return curate.run_id, train.run_id, ev.run_id, ex.run_id


def test_completed_runs_are_indexed_with_lineage_versions_and_verdicts(tmp_path):
    curate, train, ev, export = make_chain(tmp_path)
    with open_registry(tmp_path) as registry:
        versions = registry.export_versions("m")
        assert [v["version"] for v in versions] == [1, 2] and versions[-1]["export_run"] == export
        assert {v["latest_eval"] for v in versions} == {"GO"} and versions[0]["source_run"] == train
        assert registry.ancestors(export) == [*sorted([ev, train]), curate]
        stages = dict(registry.conn.execute("SELECT run_id, stage FROM runs"))
    assert sorted(stages.values()) == ["curate", "eval", "export", "export", "train"] and stages[ev] == "eval"


def test_runs_recorded_while_the_registry_was_away_are_caught_up(tmp_path):
    make_chain(tmp_path, versions=1)
    (tmp_path / REGISTRY).unlink()
    with open_registry(tmp_path) as registry:
        assert registry.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4
        assert [v["version"] for v in registry.export_versions("m")] == [1]


def test_a_file_that_is_not_a_database_is_named_and_left_alone(tmp_path, capsys):
    (tmp_path / REGISTRY).write_bytes(b"this is not sqlite, it is a note someone saved here\n" * 20)
    before = (tmp_path / REGISTRY).read_bytes()
    with start_run(tmp_path, "curate", ["curate"], {}) as run:  # the run itself still completes
        run.results.update(kept=1)
    assert "is complete but not in the registry yet" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"registry.db is not a tunewright registry .*move it away"):
        open_registry(tmp_path)
    assert (tmp_path / REGISTRY).read_bytes() == before


WRITER = """
import sys
from pathlib import Path
from tunewright.core.registry import REGISTRY, connect
registry = connect(Path(sys.argv[1]) / REGISTRY)
for i in range(150):
    rid = f"{sys.argv[2]}-{i}"
    registry.record({"run_id": rid, "stage": "train", "parents": [f"{sys.argv[2]}-{i - 1}"] if i else [],
                  "inputs": [{"path": "data/raw/a.jsonl", "sha256": "0" * 64}], "results": {}})
"""


def test_two_processes_registering_at_once_lose_no_row(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    conn = open_registry(tmp_path).conn
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 300
    assert conn.execute("SELECT COUNT(*) FROM edges").fetchone()[0] == 298
    assert conn.execute("SELECT COUNT(*) FROM inputs").fetchone()[0] == 300
    assert (
        json.loads(conn.execute("SELECT manifest FROM runs WHERE run_id = 'b-149'").fetchone()[0])["stage"] == "train"
    )


def test_the_registry_closes_its_connection_when_the_block_ends(tmp_path):
    make_chain(tmp_path, versions=1)
    with open_registry(tmp_path) as registry:
        assert registry.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        registry.conn.execute("SELECT 1")


def eval_run(ws, model_run, baseline, baseline_path, verdict):
    with start_run(ws, "eval", ["eval"], {}) as ev:
        ev.results.update(
            verdict=verdict, model_run=model_run, model_path=f"/m/{model_run}", baseline=baseline,
            baseline_path=baseline_path, gates=[{"metric": "golden.format_rate", "status": "PASS" if verdict == "GO"
                                                 else "FAIL"}],
        )  # fmt: skip
    return ev.run_id


def test_the_newest_eval_is_one_query_by_model_and_baseline(tmp_path):
    old = eval_run(tmp_path, "train-1", "base", None, "GO")
    against_v1 = eval_run(tmp_path, "train-1", "exports/m/v1", "/ws/exports/m/v1", "NO-GO")
    eval_run(tmp_path, "train-2", "base", None, "GO")
    with open_registry(tmp_path) as registry:
        newest, manifest = registry.newest_eval(model_run="train-1")
        assert newest.run_id == against_v1 == manifest["run_id"] and not newest.passed
        assert newest.failing() == "golden.format_rate (FAIL)"
        assert registry.newest_eval(model_path="/m/train-1", baseline="base")[0].run_id == old
        assert registry.newest_eval(model_run="train-1", baseline="/ws/exports/m/v1")[0].run_id == against_v1
        assert registry.newest_eval(model_run="train-3", baseline=ANY) is None
