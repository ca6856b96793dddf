import numpy as np
import pytest
from curate_helpers import run_steps

from tunewright.core.embeddings import embed
from tunewright.core.records import to_conversation
from tunewright.curate.dedup.semantic import SemanticDedup, kmeans, semantic_duplicates
from tunewright.curate.pipeline import Quarantine

TEXTS = [
    "The nightly pipeline that loads the ledger table failed. What should I check first?",
    "The nightly pipeline which loads the ledger table failed. What should I check first?",
    "How do I request access to the marketing campaigns dataset?",
    "Bananas are a good source of potassium.",
]


@pytest.fixture(scope="module")
def emb():
    return embed(TEXTS)


def test_embeddings_are_normalised_and_meaningful(emb):
    assert emb.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    sims = emb @ emb.T
    assert sims[0, 1] > 0.95
    assert sims[0, 3] < 0.3


def test_kmeans_is_deterministic_and_separates_blobs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    a, b = kmeans(x, 2, seed=1), kmeans(x, 2, seed=1)
    assert np.array_equal(a, b)
    assert len(set(a[:20])) == 1 and len(set(a[20:])) == 1 and a[0] != a[20]


def test_semantic_duplicates_keep_the_first(emb):
    assert semantic_duplicates(emb, 1, 0.95) == {1: 0}
    assert semantic_duplicates(emb, 1, 0.999) == {}


def test_step_quarantines_with_similarity():
    recs = [to_conversation({"prompt": t, "response": "ok"}, "s", f"r{i}") for i, t in enumerate(TEXTS)]
    q = Quarantine()
    kept = run_steps(recs, [SemanticDedup(threshold=0.95, clusters=2)], q)
    assert [r.id for r in kept] == ["r0", "r2", "r3"]
    assert q.entries["semantic_dedup"][0]["reason"].startswith("semantic duplicate of r0 (cosine 0.9")
