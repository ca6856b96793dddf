"""The records a shard kept, on disk: read back in order, or one at a time by order key.

Records are pickled back to back in `records.bin`; `orders.npy` and `offsets.npy` say
where each one starts, so a global step can fetch the few records it needs from any
shard (the text of a candidate pair, the id of a cluster's head) with one seek each,
memory-mapping only the index. Written by hand rather than with Parquet because the
records are Python objects the steps hand on unchanged, and these files never leave
the work directory.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from tunewright.core.records import Conversation

RECORDS, ORDERS, OFFSETS, MODIFIED = "records.bin", "orders.npy", "offsets.npy", "modified.npy"


class RecordWriter:
    """Append (order key, record, modified) triples; `close` writes the index."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fh = (directory / RECORDS).open("wb")
        self.orders: list[int] = []
        self.offsets: list[int] = []
        self.modified: list[bool] = []

    def add(self, order: int, record: Conversation, modified: bool) -> None:
        self.orders.append(order)
        self.offsets.append(self._fh.tell())
        self.modified.append(modified)
        pickle.dump(record, self._fh, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._fh.close()
        np.save(self.directory / ORDERS, np.array(self.orders, dtype=np.int64))
        np.save(self.directory / OFFSETS, np.array(self.offsets, dtype=np.int64))
        np.save(self.directory / MODIFIED, np.array(self.modified, dtype=bool))

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def read_records(directory: Path) -> Iterator[tuple[int, Conversation, bool]]:
    """(order key, record, modified) for every record of a shard, in input order."""
    orders = np.load(directory / ORDERS)
    modified = np.load(directory / MODIFIED)
    with (directory / RECORDS).open("rb") as fh:
        for order, changed in zip(orders.tolist(), modified.tolist(), strict=True):
            yield order, pickle.load(fh), changed


class RecordLookup:
    """Records by order key across the shards of one stage (`dirs[shard]`), via their indices."""

    def __init__(self, dirs: list[Path], shard_of: object) -> None:
        self.dirs = dirs
        self.shard_of = shard_of
        self._index: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fetch(self, orders: list[int]) -> dict[int, Conversation]:
        """The records with these order keys, each shard's file opened once and read front to back."""
        by_shard: dict[int, list[int]] = {}
        for order in sorted(set(orders)):
            by_shard.setdefault(self.shard_of(order), []).append(order)  # type: ignore[operator]
        out: dict[int, Conversation] = {}
        for shard, wanted in by_shard.items():
            keys, offsets = self._index_of(shard)
            positions = np.searchsorted(keys, wanted)
            with (self.dirs[shard] / RECORDS).open("rb") as fh:
                for order, pos in zip(wanted, positions.tolist(), strict=True):
                    if pos >= len(keys) or keys[pos] != order:
                        raise KeyError(f"record {order} is not in shard {shard}")
                    fh.seek(int(offsets[pos]))
                    out[order] = pickle.load(fh)
        return out

    def _index_of(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._index:
            d = self.dirs[shard]
            self._index[shard] = (np.load(d / ORDERS, mmap_mode="r"), np.load(d / OFFSETS, mmap_mode="r"))
        return self._index[shard]


def dump_pickle(path: Path, value: object) -> None:
    """A task's small result (tallies, decisions) as a pickle."""
    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        return pickle.load(fh)
