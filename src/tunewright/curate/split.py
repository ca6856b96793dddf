"""Deterministic train/validation/test splits.

Records are grouped (by `meta["cluster"]`, set by dedup steps, else their own id); groups
are ordered by a seeded hash of their key and filled into test, then validation, then
train up to the configured ratios. The same records and seed always give the same split,
independent of input order, and no group is ever divided between two splits.
"""

from __future__ import annotations

import hashlib

from tunewright.core.records import Conversation


def rank_digest(seed: int, key: str) -> bytes:
    """A group's place in the fill order: the seeded sha256 of its key."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def group_key(record: Conversation) -> str:
    """Records with the same key always land in the same split."""
    return str(record.meta.get("cluster") or record.id)


def assign_splits(keys: list[str], validation: float, test: float, seed: int) -> list[str]:
    """The split name of each record, given each record's group key, by ratio, whole groups at a time."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    targets = {"test": round(len(keys) * test), "validation": round(len(keys) * validation)}
    assigned = ["train"] * len(keys)
    filled = {"test": 0, "validation": 0}
    for key in sorted(groups, key=lambda k: rank_digest(seed, k)):
        members = groups[key]
        name = next((s for s in ("test", "validation") if filled[s] + len(members) <= targets[s]), "train")
        if name != "train":
            filled[name] += len(members)
            for i in members:
                assigned[i] = name
    return assigned
