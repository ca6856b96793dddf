"""Keep freed memory in the process instead of handing it back to the kernel after every step.

PyTorch's CPU tensors come from the C library's malloc. glibc serves a large block (128 KB and up,
adjusted as blocks are freed) with a fresh `mmap` and gives freed memory at the top of a heap back to
the kernel, so a loop that allocates and frees the same large tensors on every step (a decode step's
logits: 32 rows of a 49k vocabulary, 3-6 MB; the activations of a training step) touches new pages
each time, and every page is a fault. On a 2-core Xeon VM that cost a bf16 SmolLM2 decode step of 32
requests about 20 ms of 80: converting the step's logits to float32 took 8 ms instead of 0.5.
vLLM avoids it on CPUs by preloading tcmalloc into its workers; here glibc is told, with `mallopt`,
to serve blocks up to 32 MB (its ceiling) from the heap and to keep up to 1 GiB of free memory at a
heap's top, so a steady loop reuses its pages. The process's resident size then stays at its peak
instead of shrinking between steps, as with tcmalloc. Other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from functools import cache

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30


@cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks of up to 32 MB instead of unmapping them (once per process);
    False where the C library is not glibc or refuses."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
