"""MinHash signatures, LSH banding and connected components, vectorised with NumPy.

Written here rather than taken from `datasketch` because datasketch hashes every shingle
with a Python-level SHA-1 call and processes one document at a time; this module hashes
all shingles of a document with a handful of array operations (a polynomial rolling hash
finished with the splitmix64 mixer) and computes the permutations for a whole batch of
documents at once, which is what makes fuzzy dedup fast on a CPU.

Shingles are 32-bit hashes; permutations are `(a * x + b) mod 2^32` with odd `a`, which
are bijections of the 32-bit space computed in SIMD-friendly uint32 arithmetic. On random
shingle hashes the probability that two documents share a minimum is their Jaccard
similarity, and a band of `r` rows collides with probability `J^r` (tests check the
candidate rate against the banding formula `1 - (1 - J^r)^b`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_PRIME = np.uint64(0x100000001B3)
_WORD = re.compile(r"\w+", re.UNICODE)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: turns structured values into well-spread 64-bit hashes."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


def _rolling(values: np.ndarray, k: int) -> np.ndarray:
    """Hash every window of `k` consecutive values (one hash if there are fewer than k)."""
    n = len(values) - k + 1
    if n <= 0:
        k, n = len(values), 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        h = h * _PRIME + values[j : j + n]
    return _mix(h)


def _to32(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(32)).astype(np.uint32)


_WORD_MULS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5, 0x94D049BB133111EB],
    dtype=np.uint64,
)


def char_shingles_batch(texts: list[str], k: int = 24) -> list[np.ndarray]:
    """32-bit hashes of the character k-grams (UTF-8 bytes) of each text, for a batch at once.

    All texts are laid end to end in one byte buffer; the 8-byte little-endian word at
    every offset is read once, and the hash of the k-gram at offset i combines the words
    at i, i+8, ... (the last one masked to the k-gram's length), so the cost is a few
    array operations per batch rather than per document. A text shorter than k is one
    shingle: itself.
    """
    if k > 8 * len(_WORD_MULS):
        raise ValueError(f"character shingles longer than {8 * len(_WORD_MULS)} bytes are not supported")
    encoded = [t.encode("utf-8") or b"\0" for t in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    width = np.minimum(lengths, k)
    counts = lengths - width + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    buf = np.frombuffer(b"".join(encoded) + b"\0" * (k + 8), dtype=np.uint8)
    words = np.lib.stride_tricks.sliding_window_view(buf, 8)[: len(buf) - 7].copy().view("<u8").ravel()
    pos = np.arange(int(counts.sum()), dtype=np.int64)
    pos += np.repeat(starts - (np.cumsum(counts) - counts), counts)
    span = np.repeat(width, counts)
    h = np.zeros(len(pos), dtype=np.uint64)
    for j in range(-(-k // 8)):
        remaining = np.clip(span - 8 * j, 0, 8)
        mask = np.where(
            remaining >= 8,
            np.uint64(0xFFFFFFFFFFFFFFFF),
            (np.uint64(1) << (8 * remaining).astype(np.uint64)) - np.uint64(1),
        )
        h += (words[pos + 8 * j] & mask) * _WORD_MULS[j]
    h += span.astype(np.uint64)
    return np.split(_to32(_mix(h)), np.cumsum(counts)[:-1])


def char_shingles(text: str, k: int = 24) -> np.ndarray:
    """32-bit hashes of the character k-grams of `text` (UTF-8 bytes)."""
    return char_shingles_batch([text], k)[0]


def word_shingles(text: str, k: int = 5) -> np.ndarray:
    """32-bit hashes of the word k-grams of `text` (lower-cased words)."""
    words = _WORD.findall(text.lower()) or [""]
    ids = np.fromiter((hash_word(w) for w in words), dtype=np.uint64, count=len(words))
    return _to32(_rolling(ids, k))


def hash_word(word: str) -> int:
    """A stable 64-bit hash of a word (Python's `hash` is salted per process)."""
    b = np.frombuffer(word.encode("utf-8") or b"\0", dtype=np.uint8).astype(np.uint64)
    return int(_rolling(b, len(b))[0])


@dataclass(frozen=True)
class MinHasher:
    """`num_perm` permutations drawn from `seed`; `signatures` hashes a batch of shingle sets."""

    num_perm: int
    seed: int

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(0, 2**31, size=self.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = rng.integers(0, 2**32, size=self.num_perm, dtype=np.uint64).astype(np.uint32)
        return a.astype(np.uint32), b

    def signature(self, shingles: np.ndarray, params: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(num_perm,) uint32 MinHash signature of one shingle set."""
        return self.signatures([shingles], params)[0]

    def signatures(self, shingles: list[np.ndarray], params: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(len(shingles), num_perm) uint32 signatures, reusing one scratch buffer."""
        a, b = params or self.params()
        out = np.empty((len(shingles), self.num_perm), dtype=np.uint32)
        scratch = np.empty((max((len(s) for s in shingles), default=1), self.num_perm), dtype=np.uint32)
        for i, s in enumerate(shingles):
            vals = scratch[: len(s)]
            np.multiply(s[:, None], a[None, :], out=vals)
            np.add(vals, b[None, :], out=vals)
            vals.min(axis=0, out=out[i])
        return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: documents equal in all `rows` values of a band share its key."""
    n = signatures.shape[0]
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} hashes, have {signatures.shape[1]}")
    sig = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    keys = np.zeros((n, bands), dtype=np.uint64)
    for r in range(rows):
        keys = _mix(keys * _PRIME + sig[:, :, r])
    return keys


def candidate_pairs(keys: np.ndarray) -> np.ndarray:
    """(m, 2) index pairs (i < j) that share a bucket in some band; each bucket is a star on its first doc."""
    pairs = []
    n = keys.shape[0]
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
        heads = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
        members = ~new_group
        if members.any():
            first = order[heads[members]]
            other = order[members]
            pairs.append(np.stack([np.minimum(first, other), np.maximum(first, other)], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label of each of `n` nodes: the smallest node index in its component."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two shingle-hash sets."""
    sa, sb = np.unique(a), np.unique(b)
    inter = np.intersect1d(sa, sb, assume_unique=True).size
    return inter / (sa.size + sb.size - inter)


@dataclass(frozen=True)
class FuzzyParams:
    """MinHash + LSH parameters. Defaults are NeMo Curator's: 24-char shingles, 20 x 13, seed 42."""

    shingle: str = "char"
    ngram: int = 24
    bands: int = 20
    rows: int = 13
    seed: int = 42
    jaccard_threshold: float | None = None

    def shingles(self, text: str) -> np.ndarray:
        return char_shingles(text, self.ngram) if self.shingle == "char" else word_shingles(text, self.ngram)


def _signature_chunk(args: tuple[FuzzyParams, list[str]]) -> np.ndarray:
    params, texts = args
    shingles = (
        char_shingles_batch(texts, params.ngram) if params.shingle == "char" else [params.shingles(t) for t in texts]
    )
    return MinHasher(params.bands * params.rows, params.seed).signatures(shingles)


def signatures_for(texts: list[str], params: FuzzyParams, workers: int = 1, chunk: int = 2000) -> np.ndarray:
    """MinHash signatures of `texts`, computed in `workers` processes."""
    chunks = [(params, texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        parts = [_signature_chunk(c) for c in chunks]
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_signature_chunk, chunks)
    if not parts:
        return np.empty((0, params.bands * params.rows), dtype=np.uint32)
    return np.concatenate(parts)


def fuzzy_clusters(texts: list[str], params: FuzzyParams, workers: int = 1) -> np.ndarray:
    """Cluster label per text (the index of the first text of its near-duplicate cluster)."""
    sigs = signatures_for(texts, params, workers)
    pairs = candidate_pairs(band_keys(sigs, params.bands, params.rows))
    if params.jaccard_threshold is not None and len(pairs):
        keep = [
            jaccard(params.shingles(texts[i]), params.shingles(texts[j])) >= params.jaccard_threshold
            for i, j in pairs.tolist()
        ]
        pairs = pairs[np.array(keep, dtype=bool)]
    return connected_components(len(texts), pairs)
