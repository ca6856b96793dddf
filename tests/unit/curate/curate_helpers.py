"""Small-input conveniences for the curation tests, composed from the pipeline's own pieces."""

from collections.abc import Iterable

import numpy as np

from tunewright.core.records import Conversation
from tunewright.curate.dedup.minhash import (
    FuzzyParams,
    band_keys_for,
    candidate_pairs,
    connected_components,
    verify_pairs,
)
from tunewright.curate.pipeline import Quarantine, Step, chain
from tunewright.curate.split import assign_splits, group_key


def run_steps(records: Iterable[Conversation], steps: list[Step], quarantine: Quarantine) -> list[Conversation]:
    """Chain the steps and drain the stream into a list."""
    return list(chain(records, steps, quarantine))


def split_records(
    records: list[Conversation], validation: float, test: float, seed: int
) -> dict[str, list[Conversation]]:
    """The records of each split, in input order."""
    names = assign_splits([group_key(r) for r in records], validation, test, seed)
    out: dict[str, list[Conversation]] = {"train": [], "validation": [], "test": []}
    for name, rec in zip(names, records, strict=True):
        out[name].append(rec)
    return out


def fuzzy_clusters(texts: list[str], params: FuzzyParams) -> np.ndarray:
    """Cluster label per text (the index of the first text of its near-duplicate cluster)."""
    pairs = candidate_pairs(band_keys_for(texts, params, 1))
    pairs = verify_pairs(pairs, {int(d): texts[d] for d in np.unique(pairs)}, params)
    return connected_components(len(texts), pairs)
