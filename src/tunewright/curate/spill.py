"""A stream of records parked on disk, for steps that must see everything before deciding.

Fuzzy and semantic dedup need every record's signature or embedding before they can say
which records to keep. They keep only that index in memory and park the records
themselves here (pickled one after another in an unlinked temporary file, so nothing is
left behind even after a crash), then read them back in the same order.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from tunewright.core.records import Conversation


class Spill:
    """Add every record first, then iterate over them (as often as needed) in the order added."""

    def __init__(self, directory: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by __exit__
        self.count = 0

    def add(self, record: Conversation) -> None:
        self._file.write(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL))
        self.count += 1

    def __iter__(self) -> Iterator[Conversation]:
        self._file.flush()
        self._file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self._file)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._file.close()
