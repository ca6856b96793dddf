import json

import pytest

from tunewright.core.errors import UserError
from tunewright.core.io import sha256_file
from tunewright.core.runs import find_run, load_manifest, start_run


def test_manifest_records_hashes_versions_and_lineage(tmp_path):
    ws = tmp_path
    data = ws / "data.jsonl"
    with start_run(ws, "make", ["tunewright", "make"], {"k": 1}, seed=3) as parent:
        data.write_text("x\n")
        parent.add_output(data)
        (parent.dir / "inside.txt").write_text("y")
    with start_run(ws, "use", ["tunewright", "use"], {}) as child:
        child.add_input(data)
    m = load_manifest(ws / "runs" / parent.run_id)
    assert m["status"] == "complete"
    assert m["seed"] == 3
    assert m["config"] == {"k": 1}
    assert m["versions"]["torch"]
    assert {"path": "data.jsonl", "sha256": sha256_file(data)} in m["outputs"]
    assert any(o["path"].endswith("inside.txt") for o in m["outputs"])
    assert (ws / "runs" / parent.run_id / "config.yaml").read_text() == "k: 1\n"
    assert load_manifest(ws / "runs" / child.run_id)["parents"] == [parent.run_id]


def test_failed_run_leaves_no_run_directory(tmp_path):
    with pytest.raises(RuntimeError), start_run(tmp_path, "boom", [], {}) as run:
        (run.dir / "partial.bin").write_text("half")
        raise RuntimeError
    assert list((tmp_path / "runs").iterdir()) == []


def test_find_run_by_id_path_and_latest(tmp_path):
    ids = []
    for stage in ("train", "eval", "train"):
        with start_run(tmp_path, stage, [], {}) as run:
            ids.append(run.run_id)
    assert find_run(tmp_path, ids[0]).name == ids[0]
    assert find_run(tmp_path, f"runs/{ids[1]}").name == ids[1]
    assert find_run(tmp_path, "latest:train").name == ids[2]
    assert find_run(tmp_path, "latest").name == ids[2]
    with pytest.raises(UserError, match="no completed run"):
        find_run(tmp_path, "latest:export")
    json.loads((tmp_path / "runs" / ids[0] / "manifest.json").read_text())
