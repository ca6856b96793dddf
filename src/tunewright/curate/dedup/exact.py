"""Exact deduplication on a hash of the normalised conversation text.

The first record of each hash is kept (input order is deterministic), and every removed
record names the id it duplicated. A 16-byte blake2b digest per record keeps the index
small; collisions at that width are negligible for any corpus we will see.
"""

from __future__ import annotations

import hashlib

from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Filter
from tunewright.curate.text import normalise


def content_key(record: Conversation) -> bytes:
    """Digest of role-tagged normalised messages (calls included): what makes two records the same example."""
    joined = "\x1e".join(f"{m.role}\x1f{normalise(m.text())}" for m in record.key_messages())
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=16).digest()


class ExactDedup(Filter):
    name = "exact_dedup"
    per_record = False  # the index of seen hashes spans the whole stream

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[bytes, str] = {}

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        key = content_key(record)
        if key in self.seen:
            return False, f"duplicate of {self.seen[key]}"
        self.seen[key] = record.id
        return True
