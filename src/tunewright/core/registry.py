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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError

REGISTRY = "registry.db"
LOCK_TIMEOUT_S = 30
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
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS alias_moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, alias TEXT NOT NULL, from_version INTEGER,
    to_version INTEGER NOT NULL, user TEXT, at TEXT NOT NULL, reason TEXT, kind TEXT NOT NULL
);
"""
ALIASES = ("candidate", "staging", "production")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the registry at `path` (created with its schema if absent)."""
    conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with _write(conn):
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                conn.close()
                raise _not_a_registry(path, exc) from None
            if time.monotonic() > deadline:
                conn.close()
                raise UserError(f"{path} stayed locked by another process for {LOCK_TIMEOUT_S} s") from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _not_a_registry(path, exc) from None


def _not_a_registry(path: Path, exc: Exception) -> UserError:
    return UserError(f"{path} is not a tunewright registry (an SQLite database): {exc}; move it away")


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
    """Every version of an export name, oldest first, with its aliases and its training run's latest eval verdict."""
    rows = conn.execute(
        """SELECT e.version, e.run_id, e.source_run, e.format, e.path, e.parity_passed,
                  (SELECT v.verdict FROM verdicts v JOIN runs r ON r.run_id = v.eval_run
                   WHERE v.model_run = e.source_run ORDER BY r.started_at DESC LIMIT 1),
                  (SELECT group_concat(a.alias, ', ') FROM aliases a WHERE a.name = e.name AND a.version = e.version)
           FROM exports e WHERE e.name = ? ORDER BY e.version""",
        (name,),
    ).fetchall()
    keys = ("version", "export_run", "source_run", "format", "path", "parity_passed", "latest_eval", "aliases")
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


def alias_version(conn: sqlite3.Connection, name: str, alias: str) -> int | None:
    """The version an alias of `name` points at (None: not set)."""
    row = conn.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
    return row[0] if row else None


def move_alias(
    conn: sqlite3.Connection, name: str, alias: str, version: int, user: str, reason: str, kind: str
) -> int | None:
    """Point `name@alias` at `version`, recording who, when, why and what it pointed at; returns that."""
    from datetime import UTC, datetime

    with _write(conn):
        before = alias_version(conn, name, alias)
        conn.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (name, alias, version))
        conn.execute(
            "INSERT INTO alias_moves (name, alias, from_version, to_version, user, at, reason, kind) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, alias, before, version, user, datetime.now(UTC).isoformat(timespec="seconds"), reason, kind),
        )
    return before


def alias_moves(conn: sqlite3.Connection, name: str, alias: str) -> list[dict[str, Any]]:
    """Every move of `name@alias`, oldest first."""
    keys = ("from_version", "to_version", "user", "at", "reason", "kind")
    rows = conn.execute(
        f"SELECT {', '.join(keys)} FROM alias_moves WHERE name = ? AND alias = ? ORDER BY id", (name, alias)
    ).fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def run_manifest(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """The manifest of a recorded run (None: not in the registry)."""
    row = conn.execute("SELECT manifest FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else None
