"""The workspace registry: `registry.db`, an SQLite index of runs, export versions, lineage and verdicts.

The run manifests stay the source of truth; the registry indexes them so that any process
can ask "which versions of this model exist, what evaluated them, what did they learn
from" with one query. Every completed run is recorded when it finishes, and `open_registry`
first imports any completed run the index does not have yet (a run recorded while the
database was locked or missing is caught up), so the index never disagrees with the runs
on disk for long. Writers take SQLite's write lock up front (`BEGIN IMMEDIATE`) and wait up
to 30 s for it (WAL journal), so two processes registering at once both land. A file that
is not an SQLite database is a `UserError` naming it: nothing is written to it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError

REGISTRY = "registry.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, stage TEXT NOT NULL, started_at TEXT, finished_at TEXT, manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edges (parent TEXT NOT NULL, child TEXT NOT NULL, PRIMARY KEY (parent, child));
CREATE TABLE IF NOT EXISTS inputs (
    run_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS exports (
    name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, source_run TEXT, format TEXT,
    path TEXT NOT NULL, parity_passed INTEGER, PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS verdicts (
    eval_run TEXT PRIMARY KEY, model_run TEXT, model TEXT, baseline TEXT, verdict TEXT, config_hash TEXT
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the registry at `path` (created with its schema if absent)."""
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path} is not a tunewright registry (an SQLite database): {exc}; move it away") from None
    return conn


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _version(name: str) -> int:
    return int(name.removeprefix("v"))


def record(conn: sqlite3.Connection, manifest: dict[str, Any]) -> None:
    """Index one completed run: the run, its parents, its raw inputs, and what it made or decided."""
    rid, results = manifest["run_id"], manifest.get("results", {})
    with _write(conn):
        conn.execute(
            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?)",
            (rid, manifest["stage"], manifest.get("started_at"), manifest.get("finished_at"), json.dumps(manifest)),
        )
        conn.executemany("INSERT OR IGNORE INTO edges VALUES (?, ?)", [(p, rid) for p in manifest.get("parents", [])])
        conn.executemany(
            "INSERT OR IGNORE INTO inputs VALUES (?, ?, ?)",
            [(rid, i["path"], i["sha256"]) for i in manifest.get("inputs", []) if "sha256" in i],
        )
        if manifest["stage"] == "export" and results.get("version"):
            conn.execute(
                "INSERT OR IGNORE INTO exports VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    results["name"],
                    _version(results["version"]),
                    rid,
                    results.get("source_run"),
                    results.get("format"),
                    results.get("export_dir"),
                    int(bool(results.get("parity_passed"))),
                ),
            )
        if manifest["stage"] == "eval" and "verdict" in results:
            conn.execute(
                "INSERT OR IGNORE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    rid,
                    results.get("model_run"),
                    results.get("model"),
                    results.get("baseline"),
                    results["verdict"],
                    results.get("config_hash"),
                ),
            )


def open_registry(workspace: Path) -> sqlite3.Connection:
    """The workspace's registry, caught up with every completed run on disk."""
    from tunewright.core.runs import list_manifests

    conn = connect(workspace / REGISTRY)
    known = {row[0] for row in conn.execute("SELECT run_id FROM runs")}
    for manifest in list_manifests(workspace):
        if manifest["run_id"] not in known and manifest.get("status") == "complete":
            record(conn, manifest)
    return conn


def export_versions(conn: sqlite3.Connection, name: str) -> list[dict[str, Any]]:
    """Every version of an export name, oldest first, with the verdict of its training run's latest eval."""
    rows = conn.execute(
        """SELECT e.version, e.run_id, e.source_run, e.format, e.path, e.parity_passed,
                  (SELECT v.verdict FROM verdicts v JOIN runs r ON r.run_id = v.eval_run
                   WHERE v.model_run = e.source_run ORDER BY r.started_at DESC LIMIT 1)
           FROM exports e WHERE e.name = ? ORDER BY e.version""",
        (name,),
    ).fetchall()
    keys = ("version", "export_run", "source_run", "format", "path", "parity_passed", "latest_eval")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def ancestors(conn: sqlite3.Connection, run_id: str) -> list[str]:
    """Every run `run_id` descends from, nearest first (the lineage edges)."""
    rows = conn.execute(
        """WITH RECURSIVE up(id, depth) AS (
               SELECT parent, 1 FROM edges WHERE child = ?
               UNION SELECT e.parent, up.depth + 1 FROM edges e JOIN up ON e.child = up.id)
           SELECT id FROM up GROUP BY id ORDER BY MIN(depth), id""",
        (run_id,),
    ).fetchall()
    return [r[0] for r in rows]
