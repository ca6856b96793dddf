import numpy as np
import pytest
from curate_helpers import fuzzy_clusters, run_steps, split_records

from tunewright.core.records import to_conversation
from tunewright.curate.dedup import fuzzy as fuzzy_module
from tunewright.curate.dedup.fuzzy import FuzzyDedup
from tunewright.curate.dedup.minhash import (
    FuzzyParams,
    MinHasher,
    band_keys,
    candidate_pairs,
    char_shingles,
    char_shingles_batch,
    connected_components,
    jaccard,
    signatures_for,
    word_shingles,
)
from tunewright.curate.pipeline import Quarantine


def synthetic_pair(rng, similarity, size=300):
    """Two shingle sets with exactly the given Jaccard similarity."""
    shared = round(similarity * size)
    u = rng.choice(2**32, size=size, replace=False).astype(np.uint32)
    half = (size - shared) // 2
    a = np.concatenate([u[:shared], u[shared : shared + half]])
    b = np.concatenate([u[:shared], u[shared + half : shared + 2 * half]])
    return a, b


@pytest.mark.parametrize("similarity", [0.5, 0.7, 0.8, 0.9])
def test_candidate_rate_matches_banding_formula(similarity):
    rng = np.random.default_rng(0)
    hasher = MinHasher(260, 42)
    trials, hits, agree = 300, 0, []
    for _ in range(trials):
        a, b = synthetic_pair(rng, similarity)
        sa, sb = hasher.signatures([a, b])
        agree.append((sa == sb).mean())
        keys = band_keys(np.stack([sa, sb]), 20, 13)
        hits += bool((keys[0] == keys[1]).any())
    expected = 1 - (1 - similarity**13) ** 20
    assert np.mean(agree) == pytest.approx(similarity, abs=0.01)
    assert hits / trials == pytest.approx(expected, abs=0.08)


def test_shingles_are_deterministic_and_cover_short_texts():
    assert np.array_equal(char_shingles("the same text here"), char_shingles("the same text here"))
    assert len(char_shingles("short", 24)) == 1
    assert len(char_shingles("x" * 30, 24)) == 7
    assert len(word_shingles("one two three four five six", 5)) == 2
    assert jaccard(char_shingles("abcdefgh", 3), char_shingles("abcdefgh", 3)) == 1.0


def test_compiled_kernels_match_the_numpy_reference():
    texts = ["hello world this is a long text of many chars", "short", "x" * 30, "üñíçødé text with accents and more"]
    flat, offsets = char_shingles_batch(texts, 24)
    for i, text in enumerate(texts):
        assert np.array_equal(flat[offsets[i] : offsets[i + 1]], char_shingles(text, 24))
    hasher = MinHasher(260, 42)
    a, b = hasher.params()
    for i, text in enumerate(texts):
        sh = char_shingles(text, 24)
        reference = ((a[:, None] * sh[None, :]) + b[:, None]).min(axis=1)
        assert np.array_equal(hasher.signatures_flat(flat, offsets)[i], reference)


def test_threads_give_the_same_signatures():
    texts = [f"document number {i} with some shared boilerplate text about pipelines" for i in range(50)]
    params = FuzzyParams()
    assert np.array_equal(signatures_for(texts, params, 1, chunk=7), signatures_for(texts, params, 3, chunk=7))


def test_candidate_pairs_and_components():
    keys = np.array([[1, 7], [2, 7], [1, 8], [3, 9], [4, 9]], dtype=np.uint64)
    pairs = candidate_pairs(keys)
    assert pairs.tolist() == [[0, 1], [0, 2], [3, 4]]
    assert connected_components(5, pairs).tolist() == [0, 0, 0, 3, 3]
    assert connected_components(3, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]


def test_fuzzy_clusters_find_near_duplicates_only():
    base = "The nightly load for finance.ledger failed; check the task logs and rerun the failed tasks. " * 3
    texts = [base, base + " Thanks!", "A completely different sentence about dashboards and clicks." * 3]
    labels = fuzzy_clusters(texts, FuzzyParams(jaccard_threshold=0.8))
    assert labels.tolist() == [0, 0, 2]


def test_fuzzy_step_keeps_first_and_groups_split():
    text = "Check the freshness monitor and the latest pipeline run before escalating anything. "
    recs = [
        to_conversation({"prompt": f"q{i}", "response": text * 2 + s}, "s", f"r{i}")
        for i, s in enumerate(["", "!", "?"])
    ]
    recs.append(to_conversation({"prompt": "other", "response": "Something else entirely, unrelated."}, "s", "r9"))
    q = Quarantine()
    kept = run_steps(recs, [FuzzyDedup(FuzzyParams())], q)
    assert [r.id for r in kept] == ["r0", "r9"]
    assert [e["reason"] for e in q.entries["fuzzy_dedup"]] == ["near duplicate of r0"] * 2
    assert kept[0].meta["cluster"] == "r0"


def test_split_never_divides_a_group():
    recs = [to_conversation({"prompt": f"q{i}", "response": "a"}, "s", f"r{i}") for i in range(100)]
    for r in recs[:30]:
        r.meta["cluster"] = "big"
    for seed in range(5):
        parts = split_records(recs, 0.1, 0.2, seed)
        holding = [name for name, part in parts.items() if any(r.meta.get("cluster") == "big" for r in part)]
        assert len(holding) == 1
        assert sum(len(p) for p in parts.values()) == 100


def test_fuzzy_step_streams_in_batches_with_verification(monkeypatch):
    monkeypatch.setattr(fuzzy_module, "BATCH", 2)
    text = "Check the freshness monitor and the latest pipeline run before escalating anything. "
    bodies = [text * 2, "Unrelated answer about dashboards.", text * 2 + "!", "Another one about quotas.", text * 2]
    recs = [to_conversation({"prompt": "q", "response": b}, "s", f"r{i}") for i, b in enumerate(bodies)]
    q = Quarantine()
    kept = run_steps(recs, [FuzzyDedup(FuzzyParams(jaccard_threshold=0.8))], q)
    assert [r.id for r in kept] == ["r0", "r1", "r3"]
    assert [e["id"] for e in q.entries["fuzzy_dedup"]] == ["r2", "r4"]
    assert {e["reason"] for e in q.entries["fuzzy_dedup"]} == {"near duplicate of r0"}
