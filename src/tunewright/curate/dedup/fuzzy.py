"""Fuzzy deduplication as a curation step: MinHash + LSH + connected components.

The first record (in input order) of each near-duplicate cluster is kept; every other
member is quarantined naming the record it duplicated. Kept records of a cluster carry
`meta["cluster"]`, which the splitter uses to keep a cluster inside one split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tunewright.core.records import Conversation
from tunewright.curate.dedup.minhash import FuzzyParams, fuzzy_clusters
from tunewright.curate.pipeline import Quarantine, Step


class FuzzyDedup(Step):
    name = "fuzzy_dedup"

    def __init__(self, params: FuzzyParams, workers: int = 1) -> None:
        super().__init__()
        self.params = params
        self.workers = workers

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        batch = list(records)
        labels = fuzzy_clusters([r.text() for r in batch], self.params, self.workers)
        sizes: dict[int, int] = {}
        for label in labels.tolist():
            sizes[label] = sizes.get(label, 0) + 1
        for i, record in enumerate(batch):
            head = int(labels[i])
            if head != i:
                self.stats.reasons["near duplicate"] += 1
                quarantine.add(self.name, f"near duplicate of {batch[head].id}", record)
                continue
            if sizes[head] > 1:
                record.meta["cluster"] = record.id
            yield record
