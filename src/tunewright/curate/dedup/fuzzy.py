"""Fuzzy deduplication as a curation step: MinHash + LSH + connected components.

Streaming: records are parked on disk (`Spill`) while their LSH band keys are computed in
batches, so memory holds only `bands` 8-byte keys per record. With Jaccard verification
the texts of candidate records (and only those) are read back once. The first record (in
input order) of each near-duplicate cluster is kept; every other member is quarantined
naming the record it duplicated. Kept records of a cluster carry `meta["cluster"]`,
which the splitter uses to keep a cluster inside one split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tunewright.core.records import Conversation
from tunewright.curate.dedup.minhash import (
    FuzzyParams,
    band_keys_for,
    candidate_pairs,
    connected_components,
    verify_pairs,
)
from tunewright.curate.pipeline import Quarantine, Step
from tunewright.curate.spill import Spill

BATCH = 16384


class FuzzyDedup(Step):
    name = "fuzzy_dedup"

    def __init__(self, params: FuzzyParams, workers: int = 1, scratch: Path | None = None) -> None:
        super().__init__()
        self.params, self.workers, self.scratch = params, workers, scratch

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        with Spill(self.scratch) as spill:
            keys: list[np.ndarray] = []
            texts: list[str] = []
            for record in records:
                spill.add(record)
                texts.append(record.text())
                if len(texts) == BATCH:
                    keys.append(band_keys_for(texts, self.params, self.workers))
                    texts = []
            if texts:
                keys.append(band_keys_for(texts, self.params, self.workers))
            if not keys:
                return
            pairs = candidate_pairs(np.concatenate(keys))
            del keys, texts
            if self.params.jaccard_threshold is not None and len(pairs):
                involved = set(np.unique(pairs).tolist())
                candidates = {i: r.text() for i, r in enumerate(spill) if i in involved}
                pairs = verify_pairs(pairs, candidates, self.params)
            labels = connected_components(spill.count, pairs)
            sizes = np.bincount(labels, minlength=spill.count)
            heads: dict[int, str] = {}
            for i, record in enumerate(spill):
                head = int(labels[i])
                if head != i:
                    self.stats.reasons["near duplicate"] += 1
                    quarantine.add(self.name, f"near duplicate of {heads[head]}", record)
                    continue
                if sizes[i] > 1:
                    heads[i] = record.id
                    record.meta["cluster"] = record.id
                yield record
