"""Record-level filters for instruction data."""

from __future__ import annotations

from tunewright.core.records import Conversation, PairRecord
from tunewright.curate.pipeline import Filter


class DropEmpty(Filter):
    """Reject conversations with an empty (whitespace-only) message."""

    name = "drop_empty"

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        for m in record.messages:
            if not m.text().strip():  # a message with only tool calls is not empty
                return False, f"empty {m.role} message"
        return True


class DistinctAnswers(Filter):
    """Reject preference pairs whose chosen and rejected answers are the same: nothing to prefer."""

    name = "pair_check"

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        if isinstance(record, PairRecord):
            chosen = [m.text().strip() for m in record.chosen()]
            if chosen == [m.text().strip() for m in record.rejected()]:
                return False, "identical answers: chosen and rejected are the same"
        return True
