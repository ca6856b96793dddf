"""Decontamination: drop training records that contain n-grams of eval prompts.

Text is lower-cased and split into word tokens (punctuation dropped). Every eval prompt
contributes its word n-grams (13 by default); a prompt shorter than n contributes itself
whole, provided it has at least `min_words` tokens, so short eval items are still caught.
A training record is contaminated when any of its messages contains one of those
n-grams; its quarantine reason names the eval items it matched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import Conversation, RecordError, to_conversation
from tunewright.curate.pipeline import Filter

_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


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

    def matches(self, text: str) -> set[str]:
        toks = tokens(text)
        found: set[str] = set()
        for size in self.lengths:
            for i in range(len(toks) - size + 1):
                found |= self.grams.get(tuple(toks[i : i + size]), set())
        return found


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


class Decontaminate(Filter):
    name = "decontaminate"

    def __init__(self, index: NgramIndex) -> None:
        super().__init__()
        self.index = index
        self.matches: dict[str, list[str]] = {}

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        hits = set()
        for m in record.messages:
            hits |= self.index.matches(m.content)
        if hits:
            self.matches[record.id] = sorted(hits)
            return False, f"contains {self.index.n}-gram(s) of eval item(s) {', '.join(sorted(hits))}"
        return True

    def tallies(self) -> dict[str, Any]:
        return {**super().tallies(), "matches": self.matches}

    def reset_tallies(self) -> None:
        super().reset_tallies()
        self.matches = {}

    def absorb(self, tallies: dict[str, Any]) -> None:
        super().absorb(tallies)
        self.matches.update(tallies["matches"])
