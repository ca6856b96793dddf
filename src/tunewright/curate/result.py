"""What a curation run produced, apart from the stage that made it (the data card renders it)."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Quarantine, Step


@dataclass
class KeptRecords:
    """Tallies over the records that reached the splits, gathered as they are written."""

    keys: list[str] = field(default_factory=list)  # each record's split group key, in output order
    by_source: Counter[str] = field(default_factory=Counter)
    modified: int = 0  # kept records that a step changed (cleaning, PII)
    prompt_words: array = field(default_factory=lambda: array("I"))
    answer_words: array = field(default_factory=lambda: array("I"))
    tools: Counter[str] = field(default_factory=Counter)  # tool name -> kept records that declare it
    calls: Counter[str] = field(default_factory=Counter)  # tool name -> calls to it in kept records
    calls_per_record: Counter[int] = field(default_factory=Counter)  # calls -> records (that declare tools)

    def add(self, record: Conversation, key: str, was_modified: bool) -> None:
        self.keys.append(key)
        prompt, answer = word_lengths(record)
        self.prompt_words.append(prompt)
        self.answer_words.append(answer)
        self.count(record, was_modified)

    def count(self, record: Conversation, was_modified: bool) -> None:
        """Tally a kept record's source, modification and tool use (not its lengths or key)."""
        self.by_source[record.source] += 1
        self.modified += was_modified
        if record.tools:
            self.tools.update(t["function"]["name"] for t in record.tools)
            called = [c["function"]["name"] for m in record.messages for c in m.tool_calls or []]
            self.calls.update(called)
            self.calls_per_record[len(called)] += 1

    def merge(self, other: KeptRecords) -> None:
        """Add the counted tallies of another part of the kept records (a shard's)."""
        self.by_source += other.by_source
        self.modified += other.modified
        self.tools += other.tools
        self.calls += other.calls
        self.calls_per_record += other.calls_per_record

    def tool_use(self) -> dict[str, object]:
        """Tool use among the kept records: how many declare tools, each tool's records and calls, calls per record."""
        return {
            "records_with_tools": sum(self.calls_per_record.values()),
            "calls_per_record": length_summary(self.calls_per_record),
            "tools": {name: {"records": n, "calls": self.calls.get(name, 0)} for name, n in sorted(self.tools.items())},
        }


def word_lengths(record: Conversation) -> tuple[int, int]:
    """(prompt words, answer words) of a record, as the data card counts them."""
    return sum(len(m.content.split()) for m in record.prompt_messages()), len(record.final_answer().split())


def length_summary(values: list[int] | Counter[int]) -> dict[str, float]:
    """min / median / mean / p95 / max of lengths, given as a list or a histogram (zeros when there are none)."""
    hist = values if isinstance(values, Counter) else Counter(values)
    n = sum(hist.values())
    if not n:
        return {"min": 0, "median": 0, "mean": 0.0, "p95": 0, "max": 0}
    ordered = sorted(hist.items())

    def rank(q: float) -> int:
        target, seen = min(n - 1, int(q * n)), 0
        for value, count in ordered:
            seen += count
            if seen > target:
                return value
        return ordered[-1][0]

    return {
        "min": ordered[0][0],
        "median": rank(0.5),
        "mean": round(sum(v * c for v, c in ordered) / n, 1),
        "p95": rank(0.95),
        "max": ordered[-1][0],
    }


@dataclass
class CurationResult:
    split_counts: dict[str, int]
    quarantine: Quarantine
    steps: list[Step]
    lines_by_source: dict[str, int]
    skipped_sources: dict[str, str]
    kept_records: KeptRecords
    split_names: list[str]
    split_hashes: dict[str, str] = field(default_factory=dict)
    length_hists: dict[str, dict[str, Counter[int]]] | None = None  # per split, when counted as histograms

    @property
    def lines_read(self) -> int:
        return sum(self.lines_by_source.values())

    @property
    def kept(self) -> int:
        return sum(self.split_counts.values())

    def lengths(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per split: prompt and answer length statistics in words."""
        if self.length_hists is not None:
            return {
                split: {k: length_summary(h) for k, h in self.length_hists[split].items()}
                for split in self.split_counts
            }
        out = {}
        for split in self.split_counts:
            rows = [i for i, name in enumerate(self.split_names) if name == split]
            out[split] = {
                "prompt_words": length_summary([self.kept_records.prompt_words[i] for i in rows]),
                "answer_words": length_summary([self.kept_records.answer_words[i] for i in rows]),
            }
        return out
