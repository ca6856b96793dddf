"""Fuzzy dedup: tunewright vs datasketch MinHashLSH on the same corpus, same parameters, one run.

Generates a corpus of random-word documents with a known planted set of near duplicates
(1-3 word substitutions of a source document), then runs both tools with NeMo
Curator's parameters (24-char shingles, 260 permutations as 20 bands x 13 rows, seed 42)
and connected components over the LSH candidate pairs. Reports docs/s for both, the speed ratio, and precision/recall
of the duplicate pairs found: precision against all planted pairs, recall against the
planted pairs whose true Jaccard is >= 0.8. `--preset recall` runs the same with 26 bands
x 10 rows (same 260 permutations), which is banded for recall at Jaccard 0.8.

    python benchmarks/dedup.py --docs 200000 --workers 2
    python benchmarks/dedup.py --docs 200000 --workers 2 --preset recall --datasketch-hash xxh32
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time

import numpy as np

from tunewright.curate.config import FUZZY_PRESETS
from tunewright.curate.dedup.minhash import (
    FuzzyParams,
    band_keys,
    candidate_pairs,
    char_shingles,
    connected_components,
    jaccard,
    signatures_for,
)


def make_corpus(n_docs: int, dup_fraction: float, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Documents plus the planted (source, copy) index pairs."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(30000)]
    n_dups = int(n_docs * dup_fraction)
    docs = [" ".join(rng.choices(vocab, k=rng.randint(80, 140))) for _ in range(n_docs - n_dups)]
    planted = []
    for _ in range(n_dups):
        src = rng.randrange(len(docs) - 1) if docs else 0
        words = docs[src].split()
        for _ in range(rng.randint(1, 3)):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        planted.append((src, len(docs)))
        docs.append(" ".join(words))
    order = list(range(len(docs)))
    rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    return [docs[i] for i in order], [(where[a], where[b]) for a, b in planted]


def pairs_from_labels(labels: np.ndarray) -> set[tuple[int, int]]:
    """All same-cluster pairs (i < j)."""
    clusters: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        clusters.setdefault(lab, []).append(i)
    out = set()
    for members in clusters.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                out.add((members[x], members[y]))
    return out


def run_tunewright(docs: list[str], params: FuzzyParams, workers: int) -> np.ndarray:
    sigs = signatures_for(docs, params, workers)
    return connected_components(len(docs), candidate_pairs(band_keys(sigs, params.bands, params.rows)))


def run_datasketch(docs: list[str], params: FuzzyParams, hashfunc: str) -> np.ndarray:
    """datasketch MinHash + MinHashLSH; `hashfunc` is `sha1` (its default) or `xxh32` (its fastest)."""
    from datasketch import MinHash, MinHashLSH

    extra = {}
    if hashfunc == "xxh32":
        import xxhash

        extra = {"hashfunc": xxhash.xxh32_intdigest}
    num_perm = params.bands * params.rows
    lsh = MinHashLSH(num_perm=num_perm, params=(params.bands, params.rows))
    sketches = []
    for i, doc in enumerate(docs):
        raw = doc.encode("utf-8")
        m = MinHash(num_perm=num_perm, seed=params.seed, **extra)
        m.update_batch([raw[j : j + params.ngram] for j in range(max(1, len(raw) - params.ngram + 1))])
        lsh.insert(i, m)
        sketches.append(m)
    pairs = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    arr = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    return connected_components(len(docs), arr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--dup-fraction", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--datasketch-hash",
        choices=["sha1", "xxh32", "both"],
        default="both",
        help="datasketch's shingle hash: sha1 (its default), xxh32 (its fastest option), or both",
    )
    ap.add_argument("--preset", choices=sorted(FUZZY_PRESETS), default="nemo", help="fuzzy dedup parameter preset")
    args = ap.parse_args()

    params = FuzzyParams(**FUZZY_PRESETS[args.preset])
    docs, planted = make_corpus(args.docs, args.dup_fraction, args.seed)
    planted_pairs = pairs_from_labels(connected_components(len(docs), np.array(planted).reshape(-1, 2)))
    similarity = {
        (a, b): jaccard(char_shingles(docs[a], params.ngram), char_shingles(docs[b], params.ngram))
        for a, b in planted_pairs
    }
    truth = {p for p, j in similarity.items() if j >= 0.8}
    expected = np.mean([1 - (1 - similarity[p] ** params.rows) ** params.bands for p in truth])
    print(f"corpus: {len(docs)} docs, {len(planted)} planted near-duplicates, {len(truth)} with Jaccard >= 0.8")
    print(f"params: {params.ngram}-char shingles, {params.bands} bands x {params.rows} rows, seed {params.seed}")
    print(f"recall the banding formula predicts for these pairs (before transitivity): {expected:.4f}")
    buckets = [(0.8, 0.85), (0.85, 0.9), (0.9, 1.01)]

    results = {}
    runs = [("tunewright", lambda: run_tunewright(docs, params, args.workers))]
    for h in ("sha1", "xxh32") if args.datasketch_hash == "both" else (args.datasketch_hash,):
        runs.append((f"datasketch-{h}", lambda h=h: run_datasketch(docs, params, h)))
    for name, fn in runs:
        t0 = time.perf_counter()
        labels = fn()
        seconds = time.perf_counter() - t0
        found = pairs_from_labels(labels)
        precision, recall = len(found & planted_pairs) / max(1, len(found)), len(found & truth) / max(1, len(truth))
        results[name] = seconds
        by_bucket = []
        for lo, hi in buckets:
            members = {p for p in truth if lo <= similarity[p] < hi}
            by_bucket.append(f"J[{lo:.2f},{min(hi, 1.0):.2f}) {len(found & members) / max(1, len(members)):.3f}")
        print(
            f"{name:17} {seconds:8.1f} s  {len(docs) / seconds:9.0f} docs/s  "
            f"pairs {len(found):7d}  precision {precision:.4f}  recall@J>=0.8 {recall:.4f}  ({', '.join(by_bucket)})"
        )
    for name, seconds in results.items():
        if name != "tunewright":
            print(
                f"speed ratio tunewright / {name}: {seconds / results['tunewright']:.1f}x "
                f"(tunewright with {args.workers} worker threads; datasketch is single-process)"
            )


if __name__ == "__main__":
    main()
