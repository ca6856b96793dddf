"""The curation step contract: small steps over an iterator of records, with a quarantine.

A `Step` transforms a stream of Conversations. A `Filter` only implements
`keep(record) -> bool | (bool, reason)`; the base class counts what went in and out and
sends every rejected record to the quarantine with the step's name and the reason, so
nothing is ever silently dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tunewright.core.records import Conversation


@dataclass
class Quarantine:
    """Every removed record or unreadable line, grouped by the step that removed it."""

    entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

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
        self.entries.setdefault(step, []).append(entry)

    def count(self, action: str = "removed") -> int:
        return sum(1 for v in self.entries.values() for e in v if e["action"] == action)


@dataclass
class StepStats:
    name: str
    records_in: int = 0
    records_out: int = 0
    reasons: Counter = field(default_factory=Counter)


class Step(ABC):
    """A named transformation over a stream of records."""

    name = "step"

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


class Filter(Step):
    """A step that keeps or rejects each record; rejected ones go to the quarantine."""

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


def run_steps(records: Iterable[Conversation], steps: list[Step], quarantine: Quarantine) -> list[Conversation]:
    """Chain the steps lazily and drain the stream."""
    stream: Iterable[Conversation] = records
    for step in steps:
        stream = step(stream, quarantine)
    return list(stream)
