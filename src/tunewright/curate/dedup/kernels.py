"""Compiled inner loops of MinHash (numba): shingle hashing and signatures.

Why compiled: a signature is `num_perm` minima over every shingle of a document (260 x
~600 for a page of text). NumPy has to materialise that matrix; a fused loop keeps the
running minima in registers and LLVM vectorises the permutation loop, about ten times
faster. The kernels release the GIL, so worker threads run them in parallel without the
cost of processes. Definitions match `minhash._rolling` / `minhash.MinHasher` exactly
(tests compare them).
"""

from __future__ import annotations

import numba
import numpy as np

PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.vectorize(["uint64(uint64)"], cache=True)
def mix(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser (a ufunc: works on arrays and inside the kernels)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX2
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def char_shingle_hashes(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, k: int, out: np.ndarray) -> None:
    """For each text (bytes `buf[starts[d] : starts[d] + lengths[d]]`) write the 32-bit hashes of
    its k-byte windows to `out`, back to back (a text shorter than k is one window: itself)."""
    pos = 0
    for d in range(starts.shape[0]):
        s, n = starts[d], lengths[d]
        w = min(k, n)
        for i in range(s, s + n - w + 1):
            h = np.uint64(0)
            for j in range(w):
                h = h * PRIME + np.uint64(buf[i + j])
            out[pos] = np.uint32(mix(h) >> np.uint64(32))
            pos += 1


@numba.njit(cache=True, nogil=True)
def minhash_signatures(flat: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """`out[d, p] = min over shingles x of document d of (a[p] * x + b[p]) mod 2^32`."""
    perms = a.shape[0]
    acc = np.empty(perms, dtype=np.uint32)
    for d in range(offsets.shape[0] - 1):
        acc[:] = np.uint32(0xFFFFFFFF)
        for i in range(offsets[d], offsets[d + 1]):
            x = flat[i]
            for p in range(perms):
                acc[p] = min(acc[p], np.uint32(a[p] * x + b[p]))
        out[d, :] = acc
