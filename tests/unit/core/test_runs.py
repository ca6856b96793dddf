import json
import os

import pytest

from tunewright.core.errors import UserError
from tunewright.core.io import sha256_file
from tunewright.core.runs import find_run, load_manifest, start_run


def test_manifest_records_hashes_versions_and_lineage(tmp_path):
    ws = tmp_path
    data = ws / "data.jsonl"
    with start_run(ws, "make", ["tunewright", "make"], {"k": 1}, seed=3) as parent:
        parent.output_file(data).write_text("x\n")
        (parent.dir / "inside.txt").write_text("y")
        assert not data.exists()  # staged until the run completes
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
    used = load_manifest(ws / "runs" / child.run_id)
    assert used["parents"] == [parent.run_id]
    assert used["inputs"] == [{"path": "data.jsonl", "sha256": sha256_file(data), "run": parent.run_id}]


def test_failed_run_leaves_no_run_directory_and_no_output(tmp_path):
    out = tmp_path / "report.md"
    out.write_text("previous")
    with pytest.raises(RuntimeError), start_run(tmp_path, "boom", [], {}) as run:
        run.output_file(out).write_text("new")
        (run.output_dir(tmp_path / "exports" / "x") / "w.bin").write_text("half")
        (run.dir / "partial.bin").write_text("half")
        raise RuntimeError
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # not even the directories it made


def test_parents_come_from_the_producer_of_the_path_not_from_equal_bytes(tmp_path):
    ws = tmp_path
    base_tok = ws / "models/base/tokenizer.json"
    base_tok.parent.mkdir(parents=True)
    base_tok.write_text('{"vocab": 1}')
    with start_run(ws, "train", [], {}) as first:
        first.add_input(base_tok)
        (first.dir / "adapter").mkdir()
        (first.dir / "adapter/tokenizer.json").write_text('{"vocab": 1}')  # the same bytes, another path
    with start_run(ws, "train", [], {}) as second:
        second.add_input(base_tok)
    assert load_manifest(ws / "runs" / second.run_id)["parents"] == []

    split = ws / "data/splits/train.jsonl"
    curations = []
    for _ in range(3):  # three curation runs that write identical splits
        with start_run(ws, "curate", [], {}) as cur:
            cur.output_file(split).write_text("same\n")
        curations.append(cur.run_id)
    with start_run(ws, "train", [], {}) as third:
        third.add_input(split)
    assert load_manifest(ws / "runs" / third.run_id)["parents"] == [curations[-1]]

    split.write_text("edited by hand\n")
    with start_run(ws, "train", [], {}) as fourth:
        fourth.add_input(split)
    manifest = load_manifest(ws / "runs" / fourth.run_id)
    assert manifest["parents"] == [] and "run" not in manifest["inputs"][0]


def test_outputs_and_run_record_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with start_run(tmp_path, "make", [], {}) as run:
            run.output_file(tmp_path / "reports/card.md").write_text("x")
            (run.output_dir(tmp_path / "exports/m") / "w.bin").write_bytes(b"1")
    finally:
        os.umask(old)
    modes = {
        p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in [*tmp_path.rglob("*")]
        if not p.name.startswith(".")
    }
    run_dir = f"runs/{run.run_id}"
    assert modes["reports/card.md"] == "0o640"
    assert modes["exports/m"] == "0o750"
    assert modes["exports/m/w.bin"] == "0o640"
    assert modes[run_dir] == "0o750"
    assert modes[f"{run_dir}/manifest.json"] == "0o640"
    assert modes[f"{run_dir}/config.yaml"] == "0o640"


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


def test_versions_are_created_once_and_latest_links_move(tmp_path):
    ws = tmp_path
    for version in ("v1", "v2"):
        with start_run(ws, "export", ["x"], {}) as run:
            (run.new_output_dir(ws / "exports/m" / version) / "w.bin").write_text(version)
            run.output_link(ws / "exports/m/latest", version)
    assert os.readlink(ws / "exports/m/latest") == "v2" and (ws / "exports/m/latest/w.bin").read_text() == "v2"
    assert (ws / "exports/m/v1/w.bin").read_text() == "v1"
    newest = load_manifest(find_run(ws, "latest:export"))
    assert {"path": "exports/m/latest", "link": "v2"} in newest["outputs"]
    with (
        pytest.raises(UserError, match="already exists and is never replaced"),
        start_run(ws, "export", ["x"], {}) as run,
    ):
        run.new_output_dir(ws / "exports/m/v1")
    with (
        pytest.raises(UserError, match="created by another command meanwhile"),
        start_run(ws, "export", ["x"], {}) as run,
    ):
        (run.new_output_dir(ws / "exports/m/v3") / "w.bin").write_text("mine")
        (ws / "exports/m/v3").mkdir()  # another export took v3 while this one ran
    assert os.readlink(ws / "exports/m/latest") == "v2" and not any((ws / "exports/m/v3").iterdir())
    (ws / "exports/m/file").write_text("x")
    with pytest.raises(UserError, match="is not a link"), start_run(ws, "export", ["x"], {}) as run:
        run.output_link(ws / "exports/m/file", "v1")


def test_runs_diff_lists_changed_config_keys_and_metrics(tmp_path, capsys):
    from tunewright.cli.main import main

    for lr, loss in ((1e-4, 1.5), (2e-4, 1.25)):
        cfg = {"training": {"lr": lr, "steps": 10}, "sources": [{"name": "a", "license": "MIT"}]}
        with start_run(tmp_path, "train", ["train"], cfg) as run:
            run.results.update(val_loss=loss, steps=10)
    a, b = (
        m["run_id"] for m in sorted(map(load_manifest, (tmp_path / "runs").iterdir()), key=lambda m: m["started_at"])
    )
    assert main(["runs", "diff", a, b, "-w", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "config: 1 difference(s)\n  training.lr: 0.0001 -> 0.0002 (+0.0001)" in out
    assert "results: 1 difference(s)\n  val_loss: 1.5 -> 1.25 (-0.25)" in out
    assert "sources" not in out and "steps" not in out
