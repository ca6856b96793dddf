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
from types import TracebackType
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.manifest import EvalResult, ExportResult, Manifest, list_manifests, run_order

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


def connect(path: Path) -> Registry:
    """The registry at `path` (created with its schema if absent)."""
    conn = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            with _write(conn):
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
            return Registry(conn)
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


def open_registry(workspace: Path) -> Registry:
    """The workspace's registry, caught up with every completed run on disk; use it in a `with` block."""
    registry = connect(workspace / REGISTRY)
    try:
        known = {row[0] for row in registry.conn.execute("SELECT run_id FROM runs")}
        for manifest in list_manifests(workspace):
            if manifest["run_id"] not in known and manifest.get("status") == "complete":
                registry.record(manifest)
    except BaseException:
        registry.close()
        raise
    return registry


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


ANY = object()  # `newest_eval(baseline=ANY)`: against whatever baseline


class Registry:
    """An open registry; a context manager that closes its connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._evals: list[tuple[EvalResult, Manifest]] | None = None  # parsed once, until a run is recorded

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def record(self, manifest: Manifest) -> None:
        """Index one completed run: the run, its parents, its raw inputs, and what it made or decided."""
        conn, rid, results = self.conn, manifest["run_id"], manifest.get("results", {})
        self._evals = None
        with _write(conn):
            conn.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?)",
                (rid, manifest["stage"], manifest.get("started_at"), manifest.get("finished_at"), json.dumps(manifest)),
            )
            parents = [(p, rid) for p in manifest.get("parents", [])]
            conn.executemany("INSERT OR IGNORE INTO edges VALUES (?, ?)", parents)
            conn.executemany(
                "INSERT OR IGNORE INTO inputs VALUES (?, ?, ?)",
                [(rid, i["path"], i["sha256"]) for i in manifest.get("inputs", []) if "sha256" in i],
            )
            export = ExportResult.of(manifest)
            if export is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO exports VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        export.name,
                        export.version_number,
                        rid,
                        export.source_run,
                        export.format,
                        export.export_dir,
                        int(export.parity_passed),
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

    def evals(self) -> list[tuple[EvalResult, Manifest]]:
        """Every eval run with a verdict, with its manifest."""
        if self._evals is None:
            found = []
            for (text,) in self.conn.execute("SELECT manifest FROM runs WHERE stage = 'eval'"):
                manifest = json.loads(text)
                result = EvalResult.of(manifest)
                if result is not None:
                    found.append((result, manifest))
            self._evals = found
        return self._evals

    def newest_eval(
        self,
        model_path: str | None = None,
        model_run: str | None = None,
        baseline: object = ANY,
        replay: bool = False,
    ) -> tuple[EvalResult, Manifest] | None:
        """The newest eval whose model was the one at `model_path` or trained by `model_run`; only those
        against `baseline` (`base`, or the baseline's files' path) unless it is `ANY`. Evals of the suite, or
        with `replay`, replays of production traffic (`eval --replay`)."""
        found = [
            (r, m)
            for r, m in self.evals()
            if r.evaluated(model_path, model_run)
            and (baseline is ANY or r.against == baseline)
            and bool((m.get("results") or {}).get("replay")) == replay
        ]
        return max(found, key=lambda rm: run_order(rm[1])) if found else None

    def export_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of an export name, oldest first, with its aliases and its training run's newest verdict."""
        rows = self.conn.execute(
            """SELECT e.version, e.run_id, e.source_run, e.format, e.path, e.parity_passed,
                      (SELECT group_concat(a.alias, ', ') FROM aliases a
                       WHERE a.name = e.name AND a.version = e.version)
               FROM exports e WHERE e.name = ? ORDER BY e.version""",
            (name,),
        ).fetchall()
        keys = ("version", "export_run", "source_run", "format", "path", "parity_passed", "aliases")
        out = []
        for row in rows:
            entry = dict(zip(keys, row, strict=True))
            latest = self.newest_eval(model_run=entry["source_run"]) if entry["source_run"] else None
            entry["latest_eval"] = latest[0].verdict if latest else None
            out.append(entry)
        return out

    def export_names(self) -> list[str]:
        """Every export name with a version in the registry, sorted."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT name FROM exports ORDER BY name")]

    def ancestors(self, run_id: str) -> list[str]:
        """Every run `run_id` descends from, nearest first (the lineage edges)."""
        rows = self.conn.execute(
            """WITH RECURSIVE up(id, depth) AS (
                   SELECT parent, 1 FROM edges WHERE child = ?
                   UNION SELECT e.parent, up.depth + 1 FROM edges e JOIN up ON e.child = up.id)
               SELECT id FROM up GROUP BY id ORDER BY MIN(depth), id""",
            (run_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version an alias of `name` points at (None: not set)."""
        row = self.conn.execute("SELECT version FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
        return row[0] if row else None

    def move_alias(self, name: str, alias: str, version: int, user: str, reason: str, kind: str) -> int | None:
        """Point `name@alias` at `version`, recording who, when, why and what it pointed at; returns that."""
        from datetime import UTC, datetime

        with _write(self.conn):
            before = self.alias_version(name, alias)
            self.conn.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (name, alias, version))
            self.conn.execute(
                "INSERT INTO alias_moves (name, alias, from_version, to_version, user, at, reason, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, alias, before, version, user, datetime.now(UTC).isoformat(timespec="seconds"), reason, kind),
            )
        return before

    def alias_moves(self, name: str, alias: str) -> list[dict[str, Any]]:
        """Every move of `name@alias`, oldest first."""
        keys = ("from_version", "to_version", "user", "at", "reason", "kind")
        rows = self.conn.execute(
            f"SELECT {', '.join(keys)} FROM alias_moves WHERE name = ? AND alias = ? ORDER BY id", (name, alias)
        ).fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def run_manifest(self, run_id: str) -> Manifest | None:
        """The manifest of a recorded run (None: not in the registry)."""
        row = self.conn.execute("SELECT manifest FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None
