"""Decontamination: drop training records whose prompt is an eval prompt.

A record is contaminated when its last user message, normalised, equals the last user
message of any item in the configured eval sets. The reason names the eval item matched.
"""

from __future__ import annotations

from pathlib import Path

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import Conversation, RecordError, to_conversation
from tunewright.curate.pipeline import Filter
from tunewright.curate.text import normalise


def last_user(record: Conversation) -> str:
    return normalise([m.content for m in record.messages if m.role == "user"][-1])


def load_eval_prompts(paths: list[Path]) -> dict[str, str]:
    """Normalised eval prompt -> `file#id` of the eval item it came from."""
    index: dict[str, str] = {}
    for path in paths:
        for i, obj in enumerate(read_jsonl_strict(path), start=1):
            try:
                conv = to_conversation(obj, path.name, str(i))
            except RecordError as exc:
                raise DataError(f"{path}:{i}: eval item is not a conversation: {exc}") from None
            index.setdefault(last_user(conv), f"{path.name}#{conv.id}")
    return index


class Decontaminate(Filter):
    name = "decontaminate"

    def __init__(self, eval_prompts: dict[str, str]) -> None:
        super().__init__()
        self.eval_prompts = eval_prompts
        self.matches: dict[str, str] = {}

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        hit = self.eval_prompts.get(last_user(record))
        if hit:
            self.matches[record.id] = hit
            return False, f"prompt matches eval item {hit}"
        return True
