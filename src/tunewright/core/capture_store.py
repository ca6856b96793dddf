"""The capture store: what production asked and answered, and the feedback on it, in one SQLite file.

SQLite rather than day-partitioned Parquet: captured requests arrive one at a time and feedback
must be joined to them by response id, which Parquet (immutable files, written in batches) does
badly; SQLite appends in transactions, finds an id through its primary key, and in WAL mode a
process killed mid-write leaves the last committed transaction intact and nothing half-written.
It needs no server (unlike Langfuse's Postgres + ClickHouse), and `tunewright monitor` reads it
with plain SQL. One file per workspace (`monitor/capture.sqlite`), every row tagged with the
capture window (a run) and the served model, adapter and registry version that answered it.
Size and age are capped: rows older than `max_age_days` go first, then the oldest until the file
fits `max_bytes` (freed pages are returned to the filesystem with incremental vacuum).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    window_id TEXT NOT NULL,
    ts REAL NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT,
    version TEXT,
    workload TEXT,
    status INTEGER NOT NULL,
    finish_reason TEXT,
    stream INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    queue_s REAL,
    ttft_s REAL,
    total_s REAL,
    request TEXT,
    response TEXT,
    pii TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS feedback (
    response_id TEXT NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    ts REAL NOT NULL,
    score REAL,
    comment TEXT,
    correction TEXT,
    pii TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback (response_id);
"""

COLUMNS = (
    "id",
    "window_id",
    "ts",
    "route",
    "model",
    "adapter",
    "version",
    "workload",
    "status",
    "finish_reason",
    "stream",
    "prompt_tokens",
    "completion_tokens",
    "queue_s",
    "ttft_s",
    "total_s",
    "request",
    "response",
    "pii",
)
JSON_COLUMNS = ("request", "response", "pii")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open (and with write access, create) the store; WAL mode, so readers never block the writer."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new file, which is when it matters
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: a crash loses no committed transaction
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.row_factory = sqlite3.Row
    return conn


def insert_requests(conn: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Insert captured requests (JSON columns serialised here) in one transaction; returns how many."""
    values = [
        tuple(json.dumps(r[c], ensure_ascii=False) if c in JSON_COLUMNS else r.get(c) for c in COLUMNS) for r in rows
    ]
    with conn:
        conn.executemany(f"INSERT OR IGNORE INTO requests VALUES ({', '.join('?' * len(COLUMNS))})", values)
    return len(values)


def add_feedback(conn: sqlite3.Connection, response_id: str, feedback: dict[str, Any], pii: dict[str, int]) -> bool:
    """Join feedback to a captured response; False (nothing written) if no response has that id."""
    with conn:
        if conn.execute("SELECT 1 FROM requests WHERE id = ?", (response_id,)).fetchone() is None:
            return False
        correction = feedback.get("correction")
        conn.execute(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
            (
                response_id,
                time.time(),
                feedback.get("score"),
                feedback.get("comment"),
                None if correction is None else json.dumps(correction, ensure_ascii=False),
                json.dumps(pii),
            ),
        )
    return True


def prune(conn: sqlite3.Connection, max_bytes: int, max_age_s: float, now: float | None = None) -> int:
    """Delete rows past `max_age_s`, then the oldest until the file fits `max_bytes`; returns rows deleted."""
    now = time.time() if now is None else now
    deleted = 0
    with conn:
        deleted += conn.execute("DELETE FROM requests WHERE ts < ?", (now - max_age_s,)).rowcount
    while _size(conn) > max_bytes:
        with conn:
            count = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            if count == 0:
                break
            oldest = max(1, count // 10)
            deleted += conn.execute(
                "DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY ts LIMIT ?)", (oldest,)
            ).rowcount
        conn.execute("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return deleted


def _size(conn: sqlite3.Connection) -> int:
    """Bytes in use by the database (pages, not counting the free list)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def read_requests(conn: sqlite3.Connection, since: float | None = None, until: float | None = None) -> Iterator[dict]:
    """Captured requests in time order, JSON columns parsed, each with its `feedback` list."""
    feedback: dict[str, list[dict]] = {}
    for row in conn.execute("SELECT * FROM feedback ORDER BY ts"):
        item = dict(row)
        item["correction"] = None if item["correction"] is None else json.loads(item["correction"])
        item["pii"] = json.loads(item["pii"])
        feedback.setdefault(item.pop("response_id"), []).append(item)
    query, args = "SELECT * FROM requests WHERE ts >= ? AND ts < ? ORDER BY ts", (since or 0.0, until or float("inf"))
    for row in conn.execute(query, args):
        item = dict(row)
        for column in JSON_COLUMNS:
            item[column] = None if item[column] is None else json.loads(item[column])
        item["feedback"] = feedback.get(item["id"], [])
        yield item


def resolve_window(workspace: Path, ref: str, option: str) -> str:
    """A capture window's id (its capture run) from `latest` or an id; `option` names where it was given."""
    from tunewright.core.manifest import list_manifests, newest

    if ref != "latest":
        return ref
    found = newest([m for m in list_manifests(workspace) if m.get("stage") == "capture"])
    if found is None:
        raise UserError(f"{option} latest: no capture window is recorded; serve with capture.enabled=true first")
    return found["run_id"]


def window_rows(path: Path, window: str, option: str) -> list[dict]:
    """The requests captured in one window (time order, with feedback); a usage error when there are none."""
    if not path.is_file():
        raise UserError(f"no capture store at {path}; serve with capture.enabled=true first")
    conn = connect(path, readonly=True)
    try:
        rows = [r for r in read_requests(conn) if r["window_id"] == window]
    finally:
        conn.close()
    if not rows:
        raise UserError(f"{option} {window}: no requests captured in that window in {path}")
    return rows
