"""Input drift: has what production asks moved away from what the model was trained on?

A two-sample test on sentence embeddings (all-MiniLM-L6-v2, which we ship): the squared maximum
mean discrepancy (MMD) between a window's prompts and a reference sample, with a Gaussian kernel
whose bandwidth is the median pairwise distance, and a permutation p-value (the share of random
relabellings of the pooled sample whose MMD is at least the observed one). MMD is chosen over a
classifier's AUC because it needs no training or cross-validation and its permutation test is
exact under the null at any sample size; all permutations are evaluated at once as one matrix
product (w'Kw for a batch of signed weight vectors), so 500 permutations of 1,500 prompts take
well under a second. Written here with numpy: the test is a few lines and needs no new dependency.

Which prompts moved is told by clustering the pooled embeddings (k-means, seeded) and comparing
each cluster's share of the window with its share of the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClusterShift:
    """One cluster of prompts: its share of the window and of the reference, and window examples."""

    cluster: int
    window_share: float
    reference_share: float
    examples: list[str] = field(default_factory=list)

    @property
    def moved(self) -> float:
        return self.window_share - self.reference_share


@dataclass
class DriftTest:
    """The outcome of one two-sample test."""

    mmd2: float
    p_value: float
    n_window: int
    n_reference: int
    clusters: list[ClusterShift] = field(default_factory=list)

    def drifted(self, alpha: float) -> bool:
        return self.p_value < alpha


def _sq_distances(z: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", z, z)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 500, seed: int = 0) -> tuple[float, float]:
    """(MMD², permutation p-value) of samples `x` (window) and `y` (reference), rows being embeddings."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"a drift test needs at least 2 prompts on each side (window {n}, reference {m})")
    z = np.concatenate([x, y]).astype(np.float64)
    d2 = _sq_distances(z)
    upper = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(upper[upper > 0])) if np.any(upper > 0) else 1.0
    kernel = np.exp(-d2 / bandwidth)
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    weights = np.empty((n + m, permutations + 1))
    weights[:, 0] = labels
    for j in range(1, permutations + 1):
        weights[:, j] = rng.permutation(labels)
    stats = np.einsum("ij,ij->j", kernel @ weights, weights)  # w' K w: the biased MMD² of each labelling
    observed = float(stats[0])
    p_value = float((1 + np.sum(stats[1:] >= observed - 1e-12)) / (permutations + 1))
    return observed, p_value


def kmeans(z: np.ndarray, k: int, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """Cluster labels of the rows of `z` (k-means++ start, Lloyd iterations)."""
    rng = np.random.default_rng(seed)
    k = min(k, len(z))
    centers = [z[rng.integers(len(z))]]
    for _ in range(1, k):
        d = np.min(((z[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
        total = d.sum()
        centers.append(z[rng.choice(len(z), p=d / total)] if total > 0 else z[rng.integers(len(z))])
    c = np.array(centers)
    labels = np.zeros(len(z), dtype=int)
    for _ in range(iterations):
        labels = np.argmin(((z[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        moved = np.array([z[labels == j].mean(0) if np.any(labels == j) else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return labels


def moved_clusters(
    x: np.ndarray, y: np.ndarray, texts: list[str], k: int = 8, examples: int = 3, seed: int = 0
) -> list[ClusterShift]:
    """Clusters of the pooled prompts, the ones whose share grew most in the window first; `texts` are the
    window's prompts. A cluster's examples are its window prompts least like any reference prompt (lowest
    nearest-neighbour similarity), so what is new in it shows first."""
    labels = kmeans(np.concatenate([x, y]), k, seed)
    wl, rl = labels[: len(x)], labels[len(x) :]
    novelty = -(x @ y.T).max(axis=1)  # embeddings are normalised: a dot product is a cosine similarity
    shifts = []
    for c in np.unique(labels):
        members = np.flatnonzero(wl == c)
        picked = [texts[i] for i in members[np.argsort(-novelty[members], kind="stable")][:examples]]
        shifts.append(ClusterShift(int(c), float(np.mean(wl == c)), float(np.mean(rl == c)), picked))
    return sorted(shifts, key=lambda s: -s.moved)


def input_drift(
    window: np.ndarray, reference: np.ndarray, texts: list[str], permutations: int = 500, seed: int = 0
) -> DriftTest:
    """The MMD test of a window's prompt embeddings against a reference, and the clusters that moved."""
    mmd2, p = mmd_test(window, reference, permutations, seed)
    return DriftTest(mmd2, p, len(window), len(reference), moved_clusters(window, reference, texts, seed=seed))
