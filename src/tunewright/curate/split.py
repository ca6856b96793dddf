"""Deterministic train/validation/test splits.

Records are ordered by a seeded hash of their id, then cut at the configured ratios, so
the same records and seed always give the same split, independent of input order, and
adding records does not reshuffle the others.
"""

from __future__ import annotations

import hashlib

from tunewright.core.records import Conversation


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def split_records(
    records: list[Conversation], validation: float, test: float, seed: int
) -> dict[str, list[Conversation]]:
    """Split into train/validation/test by ratio; each split keeps input order."""
    order = sorted(range(len(records)), key=lambda i: _rank(seed, records[i].id))
    n_test = round(len(records) * test)
    n_val = round(len(records) * validation)
    chosen = {
        "test": set(order[:n_test]),
        "validation": set(order[n_test : n_test + n_val]),
    }
    out: dict[str, list[Conversation]] = {"train": [], "validation": [], "test": []}
    for i, rec in enumerate(records):
        name = next((k for k, idx in chosen.items() if i in idx), "train")
        out[name].append(rec)
    return out
