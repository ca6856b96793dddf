"""The curation step contract: small steps over an iterator of records, with a quarantine.

A `Step` transforms a stream of Conversations. A `Filter` only implements
`keep(record) -> bool | (bool, reason)`; the base class counts what went in and out and
sends every rejected record to the quarantine with the step's name and the reason, so
nothing is ever silently dropped.

Steps marked `per_record` look at one record at a time and keep no state across records
except tallies (`tallies()` / `reset_tallies()` / `absorb()`), which is what lets
`parallel.py` run them over chunks in worker processes and merge the counts back.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tunewright.core.records import Conversation

# Entry fields that locate a record rather than quote it: never scrubbed.
LOCATORS = frozenset({"step", "action", "id", "source", "path", "line"})


def scrub_entry(value: Any, scrub: Callable[[str], str], key: str | None = None) -> Any:
    """`value` with `scrub` applied to every string in it, except the locator fields of an entry."""
    if isinstance(value, str):
        return value if key in LOCATORS else scrub(value)
    if isinstance(value, dict):
        return {k: scrub_entry(v, scrub, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_entry(v, scrub) for v in value]
    return value


class Quarantine:
    """Every removed record or unreadable line, grouped by the step that removed it.

    With a `directory`, entries are appended to `<directory>/<step>.jsonl` as they come and
    only the first `keep` per step stay in memory (examples for the data card), so a large
    corpus does not pile up in memory. Without one, every entry stays in `entries`.
    With `scrub` (the PII handler), every string an entry quotes (the raw line, the
    record, the reason) is scrubbed before it is stored anywhere; file and line still
    lead to the original.
    """

    def __init__(
        self, directory: Path | None = None, keep: int | None = None, scrub: Callable[[str], str] | None = None
    ) -> None:
        self.directory = directory
        self.keep = keep
        self.scrub = scrub
        self.entries: dict[str, list[dict[str, Any]]] = {}
        self.tally: Counter[tuple[str, str]] = Counter()
        self.modified_ids: set[str] = set()  # records some step changed (kept or removed later)
        self.modified_elsewhere = 0  # changed records counted by the shards of a sharded run
        self._files: dict[str, IO[str]] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def add(
        self, step: str, reason: str, record: Conversation | None = None, action: str = "removed", **origin: Any
    ) -> None:
        """Log a removed record (or, with `action="modified"`, a changed one that continues)."""
        entry: dict[str, Any] = {"step": step, "action": action, "reason": reason}
        if record is not None:
            entry.update(
                id=record.id,
                source=record.source,
                path=record.meta.get("path"),
                line=record.meta.get("line"),
                record=record.to_dict(),
            )
        entry.update(origin)
        self.record(entry)

    def record(self, entry: dict[str, Any]) -> None:
        """Store one finished entry (also how entries made in worker processes arrive)."""
        if self.scrub is not None:
            entry = scrub_entry(entry, self.scrub)
        step = entry["step"]
        self.tally[(step, entry["action"])] += 1
        if entry["action"] == "modified" and entry.get("id") is not None:
            self.modified_ids.add(entry["id"])
        if self.directory is not None:
            fh = self._files.get(step)
            if fh is None:
                fh = self._files[step] = (self.directory / f"{step}.jsonl").open("w", encoding="utf-8")
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        kept = self.entries.setdefault(step, [])
        if self.keep is None or len(kept) < self.keep:
            kept.append(entry)

    def modified(self) -> int:
        """How many distinct records some step changed."""
        return len(self.modified_ids) + self.modified_elsewhere

    def count(self, action: str = "removed") -> int:
        return sum(n for (_, act), n in self.tally.items() if act == action)

    def by_step_action(self, action: str) -> dict[str, int]:
        """Entries of one action (removed, modified, reported) per step."""
        return {step: n for (step, act), n in self.tally.items() if act == action}

    def by_step(self) -> dict[str, int]:
        """Entries per step, in the order the steps first quarantined something."""
        out: dict[str, int] = {}
        for (step, _), n in self.tally.items():
            out[step] = out.get(step, 0) + n
        return out

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


@dataclass
class StepStats:
    name: str
    records_in: int = 0
    records_out: int = 0
    reasons: Counter = field(default_factory=Counter)

    def merge(self, other: StepStats) -> None:
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.reasons += other.reasons


class Step(ABC):
    """A named transformation over a stream of records."""

    name = "step"
    per_record = False
    in_card = True  # False for helper steps that only annotate records for the step after them

    def __init__(self) -> None:
        self.stats = StepStats(self.name)

    @abstractmethod
    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        """Yield the records that continue; quarantine the ones removed."""

    def __call__(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        for record in self.process(self._count_in(records), quarantine):
            self.stats.records_out += 1
            yield record

    def _count_in(self, records: Iterable[Conversation]) -> Iterator[Conversation]:
        for record in records:
            self.stats.records_in += 1
            yield record

    def tallies(self) -> dict[str, Any]:
        """What this step has counted so far (merged across worker processes by `absorb`)."""
        return {"stats": self.stats}

    def reset_tallies(self) -> None:
        self.stats = StepStats(self.name)

    def absorb(self, tallies: dict[str, Any]) -> None:
        self.stats.merge(tallies["stats"])


class Filter(Step):
    """A step that keeps or rejects each record; rejected ones go to the quarantine."""

    per_record = True

    @abstractmethod
    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        """True to keep; False or (False, reason) to quarantine."""

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        for record in records:
            verdict = self.keep(record)
            ok, reason = verdict if isinstance(verdict, tuple) else (verdict, self.name)
            if ok:
                yield record
            else:
                self.stats.reasons[reason.split(":")[0]] += 1
                quarantine.add(self.name, reason, record)


def chain(records: Iterable[Conversation], steps: list[Step], quarantine: Quarantine) -> Iterator[Conversation]:
    """Chain the steps lazily over a stream."""
    stream: Iterable[Conversation] = records
    for step in steps:
        stream = step(stream, quarantine)
    return iter(stream)
