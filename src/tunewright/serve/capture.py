"""Production capture for `tunewright serve`: each request and its answer, without PII, off the request path.

A route hands its finished request to `Capture.record`, which only puts it on a bounded queue
(a full queue drops the record and counts it; a request never waits for the store). One writer
thread wakes every `FLUSH_S` (sooner when a batch is waiting or feedback is asked for), not for
every record: on a few cores each wake-up of another thread stalls the engine's OpenMP workers,
and per-record wake-ups cost a few percent of throughput. It takes the records in batches,
runs curation's PII detectors over every string in them (messages, tool arguments and results,
answers) and applies the configured action before anything is written, then inserts the batch
in one transaction (`core/capture_store.py`). Feedback goes through the same queue, so it is
joined after the answer it names has been written.

If the store cannot be opened or written (a full disk, a read-only directory), capture turns
itself off with one log line and `tunewright_capture_enabled 0`; serving goes on. A server
killed outright loses at most the records still on the queue (`queue_size` at the most);
what was committed stays readable.

With `otlp_endpoint` set, each stored row is also sent as an OpenTelemetry GenAI span
(`serve/spans.py`), built from the row after PII removal.

A capture window is a run: `capture_window` records `runs/capture-*` with the served export
version as its parent when the server stops, and every captured row carries the window's id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewright.core import capture_store as store
from tunewright.core.manifest import MANIFEST
from tunewright.core.model_source import ModelSource
from tunewright.core.pii import handle_text
from tunewright.core.runs import start_run
from tunewright.core.workspace import resolve
from tunewright.serve.config import CaptureConfig
from tunewright.serve.spans import GenAiSpans

log = logging.getLogger("tunewright.serve")
BATCH = 256
FLUSH_S = 0.5
PRUNE_EVERY_S = 60.0


class CaptureOff(RuntimeError):
    """Capture is disabled or has turned itself off (feedback cannot be stored: HTTP 503)."""


@dataclass
class _Feedback:
    response_id: str
    body: dict[str, Any]
    done: Future


_STOP = object()


def scrub(value: Any, mode: str, kinds: tuple[str, ...], salt: str, counts: Counter) -> Any:
    """`value` with the PII in every string of it (nested lists and dicts too) replaced as `mode` says
    (drop-content only counts); the findings are added to `counts`."""
    if isinstance(value, str):
        text, found = handle_text(value, "report" if mode == "drop-content" else mode, kinds, salt)
        counts.update(found)
        return text
    if isinstance(value, list):
        return [scrub(v, mode, kinds, salt, counts) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, mode, kinds, salt, counts) for k, v in value.items()}
    return value


class Capture:
    """The bounded queue and the writer thread of one serving process."""

    def __init__(self, cfg: CaptureConfig, path: Path, window: str, versions: dict[str, str]) -> None:
        self.cfg, self.path, self.window, self.versions = cfg, path, window, versions
        self.queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self.salt = os.environ.get(cfg.hash_salt_env, "") if cfg.hash_salt_env else ""
        self.kinds = tuple(cfg.pii_types)
        self.enabled = False
        self.counts: Counter = Counter()  # stored, dropped_queue_full, dropped_error, feedback, pii_<kind>
        self.on_count: Callable[[str, int], None] = lambda key, n: None
        self.on_state: Callable[[bool], None] = lambda enabled: None
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.conn: sqlite3.Connection | None = None
        self.spans = GenAiSpans(cfg.otlp_endpoint, cfg.otlp_content) if cfg.otlp_endpoint else None

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store and start the writer; a store that cannot be opened turns capture off (logged)."""
        try:
            self.conn = store.connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._turn_off(f"the capture store {self.path} cannot be opened: {exc}")
            return
        self.enabled = True
        self.on_state(True)
        self.thread = threading.Thread(target=self._run, name="tunewright-capture", daemon=True)
        self.thread.start()

    def close(self, timeout: float = 30) -> None:
        """Write what is queued, then stop the writer."""
        if self.thread is not None:
            self.queue.put(_STOP)
            self.wake.set()
            self.thread.join(timeout)
            self.thread = None
        self.enabled = False
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.spans is not None:
            self.spans.close()
            self.spans = None

    # ---- the request path (no I/O) -------------------------------------------------------------------------

    def sampled(self) -> bool:
        """Whether to capture the next request."""
        return self.enabled and (self.cfg.sample_rate >= 1 or random.random() < self.cfg.sample_rate)

    def record(self, row: dict[str, Any]) -> None:
        """Queue one finished request (see `store.COLUMNS`); a full queue drops it."""
        if not self.enabled:
            return
        row = {**row, "window_id": self.window, "version": self.versions.get(row["model"])}
        try:
            self.queue.put_nowait(row)
        except queue.Full:
            self._count("dropped_queue_full")
            return
        if self.queue.qsize() >= BATCH:
            self.wake.set()

    async def feedback(self, response_id: str, body: dict[str, Any]) -> bool:
        """Store feedback on a captured response once everything queued before it is written; False if no
        captured response has that id."""
        if not self.enabled:
            raise CaptureOff("capture is off on this server, so feedback is not stored")
        done: Future = Future()
        try:
            self.queue.put_nowait(_Feedback(response_id, body, done))
        except queue.Full:
            raise CaptureOff("the capture queue is full; retry later") from None
        self.wake.set()
        return await asyncio.wrap_future(done)

    # ---- the writer thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        last_prune, stopping = 0.0, False
        while not stopping:
            if self.queue.empty():
                self.wake.wait(FLUSH_S)
                self.wake.clear()
            batch = []
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            rows = [self._clean(item) for item in batch if isinstance(item, dict)]
            jobs = [item for item in batch if isinstance(item, _Feedback)]
            try:
                if rows:
                    store.insert_requests(self.conn, rows)
                    self._count("stored", len(rows))
                    for row in rows if self.spans is not None else []:
                        self.spans.emit(row)
                for job in jobs:
                    self._feedback(job)
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    store.prune(self.conn, self.cfg.max_bytes, self.cfg.max_age_days * 86400)
                    last_prune = time.monotonic()
            except sqlite3.Error as exc:
                self._count("dropped_error", len(rows))
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(CaptureOff(f"the capture store failed: {exc}"))
                self._turn_off(f"the capture store {self.path} cannot be written: {exc}")
                self._drain()
                return

    def _clean(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as it may be stored: PII handled in its request and response, the counts kept."""
        counts: Counter = Counter()
        mode = self.cfg.pii
        request = scrub(row.get("request"), mode, self.kinds, self.salt, counts)
        response = scrub(row.get("response"), mode, self.kinds, self.salt, counts)
        if mode == "drop-content" and counts:
            request = response = None
        for kind, n in counts.items():
            self._count(f"pii_{kind}", n)
        return {**row, "request": request, "response": response, "pii": dict(counts)}

    def _feedback(self, job: _Feedback) -> None:
        counts: Counter = Counter()
        body = {k: scrub(v, self.cfg.pii, self.kinds, self.salt, counts) for k, v in job.body.items()}
        if self.cfg.pii == "drop-content" and counts:
            body = {"score": job.body.get("score")}
        for kind, n in counts.items():
            self._count(f"pii_{kind}", n)
        assert self.conn is not None
        found = store.add_feedback(self.conn, job.response_id, body, dict(counts))
        if found:
            self._count("feedback")
        job.done.set_result(found)

    def _drain(self) -> None:
        """After a failure: answer waiting feedback and count the records that will not be written."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Feedback):
                item.done.set_exception(CaptureOff("capture turned itself off"))
            elif isinstance(item, dict):
                self._count("dropped_error")

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] += n
        self.on_count(key, n)

    def _turn_off(self, why: str) -> None:
        self.enabled = False
        self.on_state(False)
        log.error("%s; capture is off, serving goes on", why)


def _producer(directory: Path) -> str | None:
    """The run that wrote an export or training run directory (its `manifest.json`), if it has one."""
    manifest = directory / MANIFEST
    return json.loads(manifest.read_text()).get("run_id") if manifest.is_file() else None


def served_lineage(
    workspace: Path, name: str, source: ModelSource, adapters: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """What each served name answers with (the model's reference, e.g. `exports/NAME/v3`, or an adapter's path)
    and the runs that produced them (the capture window's parents)."""
    versions = {name: source.label}
    dirs = [source.adapter, source.adapter.parent] if source.adapter is not None else [Path(source.base)]
    for adapter, path in adapters.items():
        versions[adapter] = path
        dirs.append(resolve(workspace, path))
    parents: list[str] = []
    for directory in dirs:
        run = _producer(directory)
        if run is not None and run not in parents:
            parents.append(run)
    return versions, parents


class _Signalled(Exception):
    """SIGINT or SIGTERM reached the serving process: the normal end of a capture window."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _signalled(signum: int, _frame: object) -> None:
    raise _Signalled(signum)


@contextmanager
def capture_window(
    workspace: Path, cfg: CaptureConfig, versions: dict[str, str], parents: list[str], command: list[str]
) -> Iterator[Capture | None]:
    """A capture for one serving process (None when capture is off), recorded as a `capture` run whose parents
    are the served versions' runs; the run is written when the server stops. A server stops on SIGINT or
    SIGTERM (uvicorn shuts down, then delivers the signal again): the window is recorded first, then the
    signal has its usual effect."""
    if not cfg.enabled:
        yield None
        return
    handled = (signal.SIGINT, signal.SIGTERM)
    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _signalled) for s in handled} if main else {}
    signalled = None
    try:
        with start_run(workspace, "capture", command, cfg.model_dump()) as run:
            for parent in parents:
                run.add_parent(parent)
            capture = Capture(cfg, workspace / cfg.path, run.run_id, versions)
            started = time.time()
            try:
                yield capture
            except _Signalled as exc:
                signalled = exc.signum
            finally:
                capture.close()
                results = {"store": cfg.path, "versions": versions, "started": started, "ended": time.time()}
                run.results.update(results, **dict(capture.counts))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signalled is not None:
        signal.raise_signal(signalled)
