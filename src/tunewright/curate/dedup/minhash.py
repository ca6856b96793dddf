"""MinHash + LSH + connected components for fuzzy dedup.

Written here rather than taken from `datasketch` because datasketch builds a Python list
of shingles and hashes each with a Python-level call, one document at a time. Here a
batch of documents is laid into one byte buffer, shingle hashes (a polynomial rolling
hash over the k bytes, finished with the splitmix64 mixer) and signatures are computed
by compiled kernels (`kernels.py`) in worker threads, and banding, candidate pairs and
components are NumPy array operations.

Shingles are 32-bit hashes; permutations are `(a * x + b) mod 2^32` with odd `a`, which
are bijections of the 32-bit space. On random shingle hashes the probability that two
documents share a minimum is their Jaccard similarity, and a band of `r` rows collides
with probability `J^r` (tests check the candidate rate against `1 - (1 - J^r)^b`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tunewright.curate.dedup.kernels import PRIME, char_shingle_hashes, minhash_signatures, mix

_WORD = re.compile(r"\w+", re.UNICODE)


def _rolling(values: np.ndarray, k: int) -> np.ndarray:
    """Hash every window of `k` consecutive values (one hash if there are fewer than k)."""
    n = len(values) - k + 1
    if n <= 0:
        k, n = len(values), 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        h = h * PRIME + values[j : j + n]
    return mix(h)


def _to32(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(32)).astype(np.uint32)


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8") or b"\0" for t in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), starts, lengths


def char_shingles_batch(texts: list[str], k: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the character k-grams (UTF-8 bytes) of a batch of texts.

    Returns the hashes back to back and the offsets delimiting each text's run
    (`flat[offsets[d]:offsets[d + 1]]`). A text shorter than k is one shingle: itself.
    """
    buf, starts, lengths = _encode(texts)
    counts = lengths - np.minimum(lengths, k) + 1
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.uint32)
    char_shingle_hashes(buf, starts, lengths, k, flat)
    return flat, offsets


def char_shingles(text: str, k: int = 24) -> np.ndarray:
    """32-bit hashes of the character k-grams of `text` (UTF-8 bytes); reference NumPy path."""
    data = np.frombuffer(text.encode("utf-8") or b"\0", dtype=np.uint8).astype(np.uint64)
    return _to32(_rolling(data, k))


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

    def signatures(self, shingles: list[np.ndarray]) -> np.ndarray:
        """(len(shingles), num_perm) uint32 signatures of several shingle sets."""
        offsets = np.zeros(len(shingles) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in shingles], out=offsets[1:])
        flat = np.concatenate(shingles).astype(np.uint32) if shingles else np.empty(0, dtype=np.uint32)
        return self.signatures_flat(flat, offsets)

    def signatures_flat(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures of the runs `flat[offsets[d]:offsets[d + 1]]` (compiled kernel)."""
        a, b = self.params()
        out = np.empty((len(offsets) - 1, self.num_perm), dtype=np.uint32)
        minhash_signatures(np.ascontiguousarray(flat, dtype=np.uint32), offsets, a, b, out)
        return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: documents equal in all `rows` values of a band share its key."""
    n = signatures.shape[0]
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows needs {bands * rows} hashes, have {signatures.shape[1]}")
    sig = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    keys = np.zeros((n, bands), dtype=np.uint64)
    for r in range(rows):
        keys = mix(keys * PRIME + sig[:, :, r])
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


def _signature_chunk(params: FuzzyParams, texts: list[str]) -> np.ndarray:
    hasher = MinHasher(params.bands * params.rows, params.seed)
    if params.shingle == "char":
        return hasher.signatures_flat(*char_shingles_batch(texts, params.ngram))
    return hasher.signatures([params.shingles(t) for t in texts])


def signatures_for(texts: list[str], params: FuzzyParams, workers: int = 1, chunk: int = 2000) -> np.ndarray:
    """MinHash signatures of `texts`, in `workers` threads (the kernels release the GIL)."""
    chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    if not chunks:
        return np.empty((0, params.bands * params.rows), dtype=np.uint32)
    if workers <= 1 or len(chunks) == 1:
        return np.concatenate([_signature_chunk(params, c) for c in chunks])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda c: _signature_chunk(params, c), chunks)))


def band_keys_for(texts: list[str], params: FuzzyParams, workers: int = 1) -> np.ndarray:
    """(len(texts), bands) LSH band keys: all a streaming dedup needs to keep per document."""
    return band_keys(signatures_for(texts, params, workers), params.bands, params.rows)


def verify_pairs(pairs: np.ndarray, texts: dict[int, str], params: FuzzyParams) -> np.ndarray:
    """The candidate pairs whose shingle sets reach `params.jaccard_threshold` (`texts`: index -> text)."""
    if params.jaccard_threshold is None or not len(pairs):
        return pairs
    involved = sorted(texts)
    if params.shingle == "char":
        flat, offsets = char_shingles_batch([texts[d] for d in involved], params.ngram)
        sets = {d: np.unique(flat[offsets[k] : offsets[k + 1]]) for k, d in enumerate(involved)}
    else:
        sets = {d: np.unique(params.shingles(texts[d])) for d in involved}
    keep = [jaccard(sets[i], sets[j]) >= params.jaccard_threshold for i, j in pairs.tolist()]
    return pairs[np.array(keep, dtype=bool)]
