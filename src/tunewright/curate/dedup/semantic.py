"""Semantic deduplication (SemDeDup): embed, cluster with k-means, drop near-identical meanings.

Records are embedded with all-MiniLM-L6-v2 (`core/embeddings.py`). k-means groups them;
inside each cluster a record is dropped when its cosine similarity to an earlier record
(input order) reaches the threshold, naming that record. k-means is a few lines of NumPy
(k-means++ seeding, Lloyd iterations), which keeps scikit-learn out of the dependencies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tunewright.core.embeddings import Embedder
from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Quarantine, Step
from tunewright.curate.spill import Spill


def kmeans(x: np.ndarray, k: int, seed: int = 42, iterations: int = 25) -> np.ndarray:
    """Cluster label per row (k-means++ seeding, Lloyd iterations, squared Euclidean)."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.integers(n) if total == 0 else rng.choice(n, p=d2 / total)
        centers.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    c = np.stack(centers)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        dist = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
        new = dist.argmin(1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(0)
    return labels


def semantic_duplicates(emb: np.ndarray, clusters: int, threshold: float, seed: int = 42) -> dict[int, int]:
    """index -> the earlier index it duplicates (cosine similarity >= threshold, same cluster)."""
    labels = kmeans(emb, clusters, seed)
    dup: dict[int, int] = {}
    for j in np.unique(labels):
        members = np.flatnonzero(labels == j)
        sims = emb[members] @ emb[members].T
        for a in range(1, len(members)):
            earlier = sims[a, :a]
            best = int(earlier.argmax())
            if earlier[best] >= threshold:
                dup[int(members[a])] = int(members[best])
    return dup


class SemanticDedup(Step):
    """Streaming: records are parked on disk while embedded in batches; memory holds the embeddings."""

    name = "semantic_dedup"
    batch_size = 64

    def __init__(
        self,
        threshold: float = 0.95,
        clusters: int | None = None,
        seed: int = 42,
        model_path: str | None = None,
        scratch: Path | None = None,
    ) -> None:
        super().__init__()
        self.threshold, self.clusters, self.seed, self.model_path = threshold, clusters, seed, model_path
        self.scratch = scratch

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        embedder = Embedder(self.model_path)
        with Spill(self.scratch) as spill:
            parts, texts = [], []
            for record in records:
                spill.add(record)
                texts.append(record.text())
                if len(texts) == self.batch_size:
                    parts.append(embedder(texts))
                    texts = []
            if texts:
                parts.append(embedder(texts))
            if not parts:
                return
            emb = np.concatenate(parts)
            del parts
            k = self.clusters or max(1, int(np.sqrt(len(emb))))
            dup = semantic_duplicates(emb, k, self.threshold, self.seed)
            wanted = set(dup.values())
            ids: dict[int, str] = {}
            for i, record in enumerate(spill):
                if i in wanted:
                    ids[i] = record.id
                if i in dup:
                    j = dup[i]
                    self.stats.reasons["semantic duplicate"] += 1
                    sim = float(emb[i] @ emb[j])
                    quarantine.add(self.name, f"semantic duplicate of {ids[j]} (cosine {sim:.3f})", record)
                else:
                    yield record
