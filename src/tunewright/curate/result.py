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
    calls_per_record: array = field(default_factory=lambda: array("I"))  # over records that declare tools

    def add(self, record: Conversation, key: str, was_modified: bool) -> None:
        self.keys.append(key)
        self.by_source[record.source] += 1
        self.modified += was_modified
        self.prompt_words.append(sum(len(m.content.split()) for m in record.prompt_messages()))
        self.answer_words.append(len(record.final_answer().split()))
        if record.tools:
            self.tools.update(t["function"]["name"] for t in record.tools)
            called = [c["function"]["name"] for m in record.messages for c in m.tool_calls or []]
            self.calls.update(called)
            self.calls_per_record.append(len(called))

    def tool_use(self) -> dict[str, object]:
        """Tool use among the kept records: how many declare tools, each tool's records and calls, calls per record."""
        return {
            "records_with_tools": len(self.calls_per_record),
            "calls_per_record": length_summary(list(self.calls_per_record)),
            "tools": {name: {"records": n, "calls": self.calls.get(name, 0)} for name, n in sorted(self.tools.items())},
        }


def length_summary(values: list[int]) -> dict[str, float]:
    """min / median / mean / p95 / max of a list of lengths (zeros for an empty list)."""
    if not values:
        return {"min": 0, "median": 0, "mean": 0.0, "p95": 0, "max": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "min": ordered[0],
        "median": rank(0.5),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p95": rank(0.95),
        "max": ordered[-1],
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

    @property
    def lines_read(self) -> int:
        return sum(self.lines_by_source.values())

    @property
    def kept(self) -> int:
        return sum(self.split_counts.values())

    def lengths(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per split: prompt and answer length statistics in words."""
        out = {}
        for split in self.split_counts:
            rows = [i for i, name in enumerate(self.split_names) if name == split]
            out[split] = {
                "prompt_words": length_summary([self.kept_records.prompt_words[i] for i in rows]),
                "answer_words": length_summary([self.kept_records.answer_words[i] for i in rows]),
            }
        return out
