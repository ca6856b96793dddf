"""The curation step that finds and handles PII in records (the detectors are `core/pii.py`, shared with
what `serve` captures): replaced in messages and inside tool-call arguments, quarantined (`drop`), or only
reported (`report`), with counts per type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from tunewright.core.pii import PII_TYPES, handle_text
from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Quarantine, Step


class PiiStep(Step):
    name = "pii"
    per_record = True

    def __init__(self, mode: str = "redact", kinds: Iterable[str] = PII_TYPES, salt: str = "") -> None:
        super().__init__()
        self.mode, self.kinds, self.salt = mode, tuple(kinds), salt
        self.counts: Counter = Counter()

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        for record in records:
            found: Counter = Counter()
            replaced = []
            mode = "redact" if self.mode == "drop" else self.mode
            for m in record.messages:
                new, counts = handle_text(m.content, mode, self.kinds, self.salt)
                calls = [self._scrub_call(c, mode, counts) for c in m.tool_calls] if m.tool_calls else None
                replaced.append((new, calls))
                found += counts
            if not found:
                yield record
                continue
            self.counts += found
            summary = ", ".join(f"{k} x{n}" for k, n in sorted(found.items()))
            if self.mode == "report":
                quarantine.add(
                    self.name,
                    f"pii found (reported): {summary}",
                    action="reported",
                    id=record.id,
                    source=record.source,
                    path=record.meta.get("path"),
                    line=record.meta.get("line"),
                    types=dict(found),
                )
                yield record
                continue
            for m, (new, calls) in zip(record.messages, replaced, strict=True):
                m.content, m.tool_calls = new, calls
            if self.mode == "drop":
                self.stats.reasons["pii"] += 1
                quarantine.add(self.name, f"pii found: {summary}", record)
                continue
            quarantine.add(self.name, f"pii {self.mode}: {summary}", record, action="modified")
            yield record

    def _scrub_call(self, call: dict[str, Any], mode: str, counts: Counter) -> dict[str, Any]:
        """A tool call with PII handled in every string of its arguments (keys are the tool's, left alone)."""

        def scrub(value: Any) -> Any:
            if isinstance(value, str):
                new, found = handle_text(value, mode, self.kinds, self.salt)
                counts.update(found)
                return new
            if isinstance(value, dict):
                return {k: scrub(v) for k, v in value.items()}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            return value

        return {**call, "function": {**call["function"], "arguments": scrub(call["function"]["arguments"])}}

    def tallies(self) -> dict[str, Any]:
        return {**super().tallies(), "counts": self.counts}

    def reset_tallies(self) -> None:
        super().reset_tallies()
        self.counts = Counter()

    def absorb(self, tallies: dict[str, Any]) -> None:
        super().absorb(tallies)
        self.counts += tallies["counts"]
