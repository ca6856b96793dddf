"""A loop whose large tensors are freed and allocated again reuses their pages once glibc is told to keep them."""

import platform
import subprocess
import sys

import pytest

from tunewright.core.allocator import keep_freed_memory

LOOP = """
import resource, sys, torch
from tunewright.core.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(40):  # 6 MB and a little more each step, freed at once: a decode step's logits and attention
    torch.ones((6 << 20) + i * (64 << 10), dtype=torch.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", LOOP, mode], capture_output=True, text=True, check=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, kept = page_faults("default"), page_faults("keep")
    assert default > 20 * (6 << 20) // 4096  # a fresh mapping, faulted in page by page, nearly every step
    assert kept < default / 3
    assert keep_freed_memory() is True
