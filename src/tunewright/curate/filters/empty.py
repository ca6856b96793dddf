"""Record-level filters for instruction data."""

from __future__ import annotations

from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Filter


class DropEmpty(Filter):
    """Reject conversations with an empty (whitespace-only) message."""

    name = "drop_empty"

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        for m in record.messages:
            if not m.content.strip():
                return False, f"empty {m.role} message"
        return True
