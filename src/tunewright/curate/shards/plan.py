"""Cutting the sources of a curation into shards, and the order key every record carries.

A shard is a whole file, or for JSONL a byte range of one cut at line starts, so a large
file is read by many workers at once. Each shard knows the line number it starts at, so a
record's origin (`path`, `line`) and its default id (`<source>:<line>`) are what one process
reading the file from the top would give. The order key `(source index << 40) | line` sorts
records in input order whatever the partitioning: every global step (which copy of a
duplicate is kept, which record heads a cluster) decides by it, never by arrival.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunewright.core.io import Line, iter_jsonl, iter_records_file

LINE_BITS = 40
BLOCK = 1 << 20


def order_key(source_index: int, line: int) -> int:
    """The record's position in input order, as one int64."""
    return (source_index << LINE_BITS) | line


def split_order(order: int) -> tuple[int, int]:
    """(source index, line) of an order key."""
    return order >> LINE_BITS, order & ((1 << LINE_BITS) - 1)


@dataclass(frozen=True)
class Shard:
    """Lines `first_line`... of `path` that start in bytes [start, end) (end None: to the end of the file)."""

    index: int
    source_index: int
    path: str
    format: str
    start: int = 0
    end: int | None = None
    first_line: int = 1

    def lines(self) -> Iterator[Line]:
        """The shard's lines, as `core.io` readers give them."""
        if self.format == "jsonl":
            return iter_jsonl(Path(self.path), self.start, self.end, self.first_line)
        return iter_records_file(Path(self.path), self.format)

    @property
    def first_order(self) -> int:
        return order_key(self.source_index, self.first_line)


def _cuts(path: Path, pieces: int) -> list[tuple[int, int]]:
    """(byte offset, line number) of `pieces` line-aligned starts spread evenly over `path`."""
    size = path.stat().st_size
    targets = [size * i // pieces for i in range(1, pieces)]
    cuts = [(0, 1)]
    pos, line = 0, 1
    with path.open("rb") as fh:
        for target in targets:
            while pos < target:  # count the lines before the byte where this piece should begin
                block = fh.read(min(BLOCK, target - pos))
                line += block.count(b"\n")
                pos += len(block)
            rest = fh.readline()  # the piece begins at the next line start
            if rest.endswith(b"\n"):
                line += 1
            pos += len(rest)
            if pos < size and pos > cuts[-1][0]:
                cuts.append((pos, line))
    return cuts


def plan_shards(files: list[tuple[int, Path, str]], world_size: int, shard_bytes: int) -> list[Shard]:
    """Shards of `(source index, path, format)` files: at least `world_size` in all where the data allows,
    none larger than about `shard_bytes`; CSV and Parquet files are one shard each."""
    sizes = {i: path.stat().st_size for i, path, _ in files}
    splittable = sum(sizes[i] for i, _, fmt in files if fmt == "jsonl") or 1
    wanted = max(world_size, math.ceil(splittable / shard_bytes))
    shards: list[Shard] = []
    for source_index, path, fmt in files:
        if fmt != "jsonl":
            shards.append(Shard(len(shards), source_index, str(path), fmt))
            continue
        pieces = max(1, math.ceil(sizes[source_index] / shard_bytes), round(wanted * sizes[source_index] / splittable))
        cuts = _cuts(path, pieces)
        for k, (start, line) in enumerate(cuts):
            end = cuts[k + 1][0] if k + 1 < len(cuts) else None
            shards.append(Shard(len(shards), source_index, str(path), fmt, start, end, line))
    return shards


class ShardIndex:
    """Which shard holds a record, from its order key."""

    def __init__(self, shards: list[Shard]) -> None:
        self._starts = [s.first_order for s in shards]
        self._shards = [s.index for s in shards]

    def shard_of(self, order: int) -> int:
        return self._shards[bisect.bisect_right(self._starts, order) - 1]
