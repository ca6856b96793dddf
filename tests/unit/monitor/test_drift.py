"""Input drift on real MiniLM embeddings: power against a topic the training data lacks, and false alarms."""

import random

import numpy as np
import pytest

from tunewright.core.embeddings import embed
from tunewright.demo import domain
from tunewright.monitor.drift import input_drift, kmeans, mmd_test

ALPHA, TRIALS, WINDOW, REFERENCE = 0.01, 20, 500, 400


@pytest.fixture(scope="module")
def pools():
    """Embeddings of the domain's prompts (what the model was trained on) and of off-topic questions."""
    rng = random.Random(0)
    trained = sorted({p for _, _, p in domain.all_cases()} | {p for _, p, _ in domain.incident_cases()})
    novel = sorted(set(domain.off_topic_questions(rng, 2000)))
    return embed(trained), embed(novel)


def trial(pools, share: float, seed: int) -> float:
    trained, novel = pools
    rng = np.random.default_rng(seed)
    reference = trained[rng.integers(len(trained), size=REFERENCE)]
    k = round(WINDOW * share)
    window = np.concatenate(
        [trained[rng.integers(len(trained), size=WINDOW - k)], novel[rng.integers(len(novel), size=k)]]
    )
    return mmd_test(window, reference, permutations=200, seed=seed)[1]


def test_a_window_with_30_percent_of_a_new_topic_is_flagged(pools):
    flagged = sum(trial(pools, 0.3, seed) < ALPHA for seed in range(TRIALS))
    assert flagged >= 0.95 * TRIALS


def test_windows_from_the_training_distribution_are_rarely_flagged(pools):
    flagged = sum(trial(pools, 0.0, 100 + seed) < ALPHA for seed in range(TRIALS))
    assert flagged <= 0.05 * TRIALS


def test_the_cluster_that_grew_holds_the_new_topic(pools):
    trained, novel = pools
    trained = trained[np.random.default_rng(0).permutation(len(trained))]
    window = np.concatenate([trained[:140], novel[:60]])
    texts = ["trained"] * 140 + ["novel"] * 60
    result = input_drift(window, trained[140:], texts, permutations=100)
    assert result.drifted(ALPHA)
    top = result.clusters[0]  # the topic may split over clusters; the one that grew most is all new
    assert top.moved >= 0.15 and top.reference_share < 0.02 and set(top.examples) == {"novel"}


def test_mmd_of_identical_samples_is_not_significant_and_sizes_are_checked():
    x = np.random.default_rng(0).normal(size=(50, 8))
    assert mmd_test(x, x.copy(), permutations=50)[1] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(x[:1], x)


def test_kmeans_separates_two_blobs():
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 0.1, (30, 4)), rng.normal(5, 0.1, (30, 4))])
    labels = kmeans(z, 2)
    assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1 and labels[0] != labels[-1]
