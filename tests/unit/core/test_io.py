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
