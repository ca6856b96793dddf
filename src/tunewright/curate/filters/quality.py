"""The heuristic quality filters as one curation step, reading the text a record trains on.

For chat SFT the loss is on assistant turns only, so by default the filters read the
assistant messages (joined by blank lines); `text: all` makes them read every message.
A record is quarantined at the first filter it fails, with the score and the bound.
"""

from __future__ import annotations

from tunewright.core.records import Conversation
from tunewright.curate.filters.heuristic import HeuristicFilter
from tunewright.curate.pipeline import Filter


def training_text(record: Conversation, which: str) -> str:
    if which == "all":
        return "\n\n".join(m.text() for m in record.messages)
    return "\n\n".join(m.text() for m in record.messages if m.role == "assistant")


class QualityFilter(Filter):
    name = "quality"

    def __init__(self, filters: list[HeuristicFilter], text: str = "assistant") -> None:
        super().__init__()
        self.filters = filters
        self.text = text

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        text = training_text(record, self.text)
        for f in self.filters:
            ok, value = f.check(text)
            if not ok:
                return False, f.describe(value)
        return True
