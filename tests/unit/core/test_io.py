import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunewright.core.errors import DataError
from tunewright.core.io import atomic_dir, atomic_write, iter_jsonl, iter_parquet, read_jsonl_strict, write_jsonl


def test_iter_jsonl_reports_bad_lines_with_numbers(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"a": 1}\n\n{"a": \n\xff\xfe{"a": 2}\n{"a": 3}\n')
    lines = list(iter_jsonl(p))
    assert [(x.lineno, x.value, (x.error or "").split(":")[0]) for x in lines] == [
        (1, {"a": 1}, ""),
        (2, None, "empty line"),
        (3, None, "malformed JSON"),
        (4, None, "invalid UTF-8 at byte 0"),
        (5, {"a": 3}, ""),
    ]
    assert all(x.path == str(p) for x in lines)


def test_read_jsonl_strict_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\nnope\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON"):
        read_jsonl_strict(p)
    with pytest.raises(DataError, match="not found"):
        read_jsonl_strict(tmp_path / "missing.jsonl")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(p) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]
    write_jsonl(p, [{"x": 1}])
    assert json.loads(p.read_text()) == {"x": 1}


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    d = tmp_path / "splits"
    with atomic_dir(d) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(ValueError), atomic_dir(d) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError
    assert sorted(p.name for p in d.iterdir()) == ["a"]
    with atomic_dir(d) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in d.iterdir()) == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["splits"]


def test_parquet_rows_and_corrupt_file(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "response": ["x", "y"]}), p)
    rows = list(iter_parquet(p))
    assert [(r.lineno, r.value["prompt"]) for r in rows] == [(1, "a"), (2, "b")]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        list(iter_parquet(bad))


def test_output_set_replaces_everything_or_nothing(tmp_path, monkeypatch):
    import os

    from tunewright.core.io import OutputSet

    card, splits = tmp_path / "card.md", tmp_path / "splits"
    card.write_text("old card")
    splits.mkdir()
    (splits / "train.jsonl").write_text("old split")

    def stage() -> OutputSet:
        out = OutputSet()
        out.file(card).write_text("new card")
        (out.dir(splits) / "train.jsonl").write_text("new split")
        (out.dir(tmp_path / "fresh") / "f").write_text("new")
        return out

    real_rename, calls = os.rename, []

    def failing_rename(src, dst):
        calls.append(dst)
        if len(calls) == 4:  # card aside, card in, splits aside, then the new splits fail to land
            raise OSError(28, "No space left on device", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        stage().commit()
    monkeypatch.setattr(os, "rename", real_rename)
    assert card.read_text() == "old card"
    assert (splits / "train.jsonl").read_text() == "old split"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md", "splits"]

    stage().commit()
    assert card.read_text() == "new card"
    assert (splits / "train.jsonl").read_text() == "new split"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md", "fresh", "splits"]


def test_output_set_never_swaps_a_directory_for_a_file(tmp_path):
    from tunewright.core.errors import UserError
    from tunewright.core.io import OutputSet

    (tmp_path / "card.md").mkdir()
    with pytest.raises(UserError, match=r"card\.md is a directory, but this output is a file"):
        OutputSet().file(tmp_path / "card.md")


def test_atomic_write_and_dir_honour_the_umask(tmp_path):
    import os

    from tunewright.core.io import atomic_dir, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("y")
            os.chmod(d / "f", 0o600)  # as safetensors leaves its files
    finally:
        os.umask(old)
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "d/f").stat().st_mode & 0o777) == "0o644"


def test_malformed_json_reason_reads_once(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "unterminated\n')
    (line,) = list(iter_jsonl(p))
    assert line.error == "malformed JSON: Unterminated string starting at column 12"


def test_staging_left_by_a_dead_process_is_removed_by_the_next_one(tmp_path):
    import os
    import subprocess
    import sys

    from tunewright.core.io import OutputSet, make_staging_dir, staging_path

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    mine = staging_path(tmp_path / "v1")
    host = mine.name.split("@", 1)[1].split(".", 1)[0]
    dead = tmp_path / f".v1.{gone.stdout.strip()}@{host}.abcd1234.partial"
    live = tmp_path / f".v1.{os.getppid()}@{host}.abcd1234.partial"
    other_host = tmp_path / f".v1.{gone.stdout.strip()}@elsewhere.abcd1234.partial"
    for path in (dead, live, other_host):
        path.mkdir()
        (path / "model.safetensors").write_text("half")
    staged = make_staging_dir(tmp_path / "v2")
    assert not dead.exists() and live.exists() and other_host.exists() and staged.is_dir()
    assert f".{os.getpid()}@{host}." in staged.name
    dead.mkdir()
    outputs = OutputSet()
    outputs.file(tmp_path / "report.md").write_text("new")
    outputs.commit()
    assert not dead.exists() and (tmp_path / "report.md").read_text() == "new"
