"""Deterministic train/validation/test splits.

Records are grouped (by `meta["cluster"]`, set by dedup steps, else their own id); groups
are ordered by a seeded hash of their key and filled into test, then validation, then
train up to the configured ratios. The same records and seed always give the same split,
independent of input order, and no group is ever divided between two splits.
"""

from __future__ import annotations

import hashlib

from tunewright.core.records import Conversation


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def group_key(record: Conversation) -> str:
    """Records with the same key always land in the same split."""
    return str(record.meta.get("cluster") or record.id)


def split_records(
    records: list[Conversation], validation: float, test: float, seed: int
) -> dict[str, list[Conversation]]:
    """Split into train/validation/test by ratio, whole groups at a time; each split keeps input order."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(group_key(rec), []).append(i)
    targets = {"test": round(len(records) * test), "validation": round(len(records) * validation)}
    assigned: dict[int, str] = {}
    filled = {"test": 0, "validation": 0}
    for key in sorted(groups, key=lambda k: _rank(seed, k)):
        members = groups[key]
        name = next((s for s in ("test", "validation") if filled[s] + len(members) <= targets[s]), "train")
        if name != "train":
            filled[name] += len(members)
        for i in members:
            assigned[i] = name
    out: dict[str, list[Conversation]] = {"train": [], "validation": [], "test": []}
    for i, rec in enumerate(records):
        out[assigned[i]].append(rec)
    return out
