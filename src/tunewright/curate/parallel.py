"""Run the curation steps over a stream, with the per-record steps in worker processes.

Consecutive `per_record` steps (cleaning, filters, language ID, PII, decontamination) form
a segment. With `workers > 1` a segment runs in a pool of processes: the stream is cut
into chunks, at most `2 * workers` chunks are in flight (so memory stays bounded however
large the corpus), and results come back in input order, so the output, the quarantine
and every count are the same as with one process. Workers send back kept records,
quarantine entries and each step's tallies, which are merged into the main process's
step objects. Stateful steps (exact, fuzzy and semantic dedup) run in the main process.

Workers are spawned rather than forked: the main process may hold threads (progress
display, compiled-kernel thread pools) that a fork would copy in a broken state.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any

from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Quarantine, Step, chain

CHUNK = 256

_worker_steps: list[Step] = []


def _init_worker(steps: list[Step]) -> None:
    global _worker_steps
    _worker_steps = steps


def _run_chunk(records: list[Conversation]) -> tuple[list[Conversation], list[dict[str, Any]], list[dict[str, Any]]]:
    quarantine = Quarantine()
    for step in _worker_steps:
        step.reset_tallies()
    kept = list(chain(records, _worker_steps, quarantine))
    entries = [e for per_step in quarantine.entries.values() for e in per_step]
    return kept, entries, [step.tallies() for step in _worker_steps]


def _chunks(records: Iterable[Conversation], size: int) -> Iterator[list[Conversation]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def _segment_in_pool(
    records: Iterable[Conversation], steps: list[Step], quarantine: Quarantine, workers: int, chunk: int
) -> Iterator[Conversation]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(steps,)) as pool:
        pending: deque[Future] = deque()

        def merge(future: Future) -> list[Conversation]:
            kept, entries, tallies = future.result()
            for entry in entries:
                quarantine.record(entry)
            for step, t in zip(steps, tallies, strict=True):
                step.absorb(t)
            return kept

        for part in _chunks(records, chunk):
            pending.append(pool.submit(_run_chunk, part))
            if len(pending) >= 2 * workers:
                yield from merge(pending.popleft())
        while pending:
            yield from merge(pending.popleft())


def segments(steps: list[Step]) -> list[list[Step]]:
    """Consecutive per-record steps grouped together; every other step alone."""
    out: list[list[Step]] = []
    for step in steps:
        if step.per_record and out and out[-1][-1].per_record:
            out[-1].append(step)
        else:
            out.append([step])
    return out


def stream_steps(
    records: Iterable[Conversation], steps: list[Step], quarantine: Quarantine, workers: int = 1, chunk: int = CHUNK
) -> Iterator[Conversation]:
    """The steps chained over the stream; per-record segments in `workers` processes."""
    stream: Iterable[Conversation] = records
    for group in segments(steps):
        if workers > 1 and group[0].per_record:
            stream = _segment_in_pool(stream, group, quarantine, workers, chunk)
        else:
            stream = chain(stream, group, quarantine)
    return iter(stream)
