"""Decontamination: drop training records that contain distinctive n-grams of eval prompts.

Text is lower-cased and split into word tokens (punctuation dropped). Every eval prompt
contributes its word n-grams (13 by default); a prompt shorter than n contributes itself
whole, provided it has at least `min_words` tokens, so short eval items are still caught.

Two steps do the work. `EvalNgramScan` (per record, so it runs in the worker processes)
notes on each record the eval n-grams it contains. `Decontaminate` then counts, over the
whole corpus, how many training records contain each matched n-gram: one found in more
than `max_matches` records (NeMo Curator's guard, default 10) is common phrasing shared by
templated data and the eval prompts, not a leaked eval item, and is ignored. A record is
removed when it contains an n-gram that is not ignored; its quarantine reason names the
eval items it matched. Records pass straight through until the first match; from there on
every record waits on disk until the counts are complete, so the output keeps input order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import Conversation, RecordError, to_conversation
from tunewright.curate.pipeline import Quarantine, Step
from tunewright.curate.spill import Spill

_TOKEN = re.compile(r"\w+")
HITS = "_eval_ngrams"  # meta key the scan sets and the decision step removes


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def eval_set_of(item: str) -> str:
    """The eval file an item id (`<file>#<id>`) comes from."""
    return item.partition("#")[0]


class NgramIndex:
    """Eval n-grams (as token tuples) -> the eval items they come from."""

    def __init__(self, n: int = 13, min_words: int = 5) -> None:
        self.n, self.min_words = n, min_words
        self.grams: dict[tuple[str, ...], set[str]] = {}
        self.lengths: set[int] = set()

    def add(self, text: str, item: str) -> None:
        toks = tokens(text)
        if len(toks) < self.min_words:
            return
        size = min(self.n, len(toks))
        self.lengths.add(size)
        for i in range(len(toks) - size + 1):
            self.grams.setdefault(tuple(toks[i : i + size]), set()).add(item)

    def matched_grams(self, text: str) -> set[tuple[str, ...]]:
        """The indexed n-grams that occur in `text`."""
        toks = tokens(text)
        found: set[tuple[str, ...]] = set()
        for size in self.lengths:
            for i in range(len(toks) - size + 1):
                gram = tuple(toks[i : i + size])
                if gram in self.grams:
                    found.add(gram)
        return found

    def matches(self, text: str) -> set[str]:
        """The eval items whose n-grams occur in `text`."""
        return {item for gram in self.matched_grams(text) for item in self.grams[gram]}

    def grams_per_set(self) -> Counter[str]:
        """How many n-grams each eval file contributed."""
        counts: Counter[str] = Counter()
        for items in self.grams.values():
            counts.update({eval_set_of(item) for item in items})
        return counts


def load_eval_index(paths: list[Path], n: int = 13, min_words: int = 5) -> NgramIndex:
    """Index the user prompts of every eval item in `paths`."""
    index = NgramIndex(n, min_words)
    for path in paths:
        for i, obj in enumerate(read_jsonl_strict(path), start=1):
            try:
                conv = to_conversation(obj, path.name, str(i))
            except RecordError as exc:
                raise DataError(f"{path}:{i}: eval item is not a conversation: {exc}") from None
            for m in conv.messages:
                if m.role == "user":
                    index.add(m.content, f"{path.name}#{conv.id}")
    return index


class EvalNgramScan(Step):
    """Notes on each record the eval n-grams it contains (the decision is `Decontaminate`'s)."""

    name = "decontaminate_scan"
    per_record = True
    in_card = False

    def __init__(self, index: NgramIndex) -> None:
        super().__init__()
        self.index = index

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        for record in records:
            found: set[tuple[str, ...]] = set()
            for m in record.messages:
                found |= self.index.matched_grams(m.text())
            if found:
                record.meta[HITS] = sorted(" ".join(g) for g in found)
            yield record


class Decontaminate(Step):
    """Removes records holding a distinctive eval n-gram; ignores n-grams common in the corpus."""

    name = "decontaminate"

    def __init__(self, index: NgramIndex, max_matches: int | None = 10, scratch: Path | None = None) -> None:
        super().__init__()
        self.index, self.max_matches, self.scratch = index, max_matches, scratch
        self.matches: dict[str, list[str]] = {}
        self.frequency: Counter[str] = Counter()  # matched n-gram -> training records containing it
        self.ignored: dict[str, int] = {}  # n-grams over max_matches -> their record count

    def items_of(self, gram: str) -> set[str]:
        return self.index.grams[tuple(gram.split(" "))]

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        with Spill(self.scratch) as parked:
            for record in records:
                hits = record.meta.get(HITS)
                if not hits and not parked.count:
                    yield record
                    continue
                self.frequency.update(hits or [])
                parked.add(record)
            limit = self.max_matches
            self.ignored = {g: n for g, n in self.frequency.items() if limit is not None and n > limit}
            for record in parked:
                distinctive = [g for g in record.meta.pop(HITS, None) or [] if g not in self.ignored]
                if not distinctive:
                    yield record
                    continue
                items = sorted({item for g in distinctive for item in self.items_of(g)})
                self.matches[record.id] = items
                self.stats.reasons["eval n-gram"] += 1
                quarantine.add(self.name, f"contains {self.index.n}-gram(s) of eval item(s) {', '.join(items)}", record)

    def per_set(self) -> dict[str, dict[str, int]]:
        """Per eval file: n-grams indexed, training records removed, n-grams ignored as common."""
        out = {name: {"ngrams": n, "removed": 0, "ignored": 0} for name, n in self.index.grams_per_set().items()}
        for items in self.matches.values():
            for name in {eval_set_of(i) for i in items}:
                out[name]["removed"] += 1
        for gram in self.ignored:
            for name in {eval_set_of(i) for i in self.items_of(gram)}:
                out[name]["ignored"] += 1
        return out
