"""Reading raw sources with provenance: license gate, line numbers, normalisation.

Each record gets `source` and its origin (`path`, `line`) in `meta`, and an id of
`<source>:<line>` unless the input has one. Unreadable lines and records of the wrong
shape go to the quarantine with their file and line number.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.io import iter_records_file
from tunewright.core.records import Conversation, RecordError, to_conversation
from tunewright.curate.config import SourceConfig
from tunewright.curate.pipeline import Quarantine


def check_licenses(sources: list[SourceConfig], allowed: list[str]) -> None:
    """Stop before reading anything if a source may not be trained on."""
    for s in sources:
        if s.license not in allowed:
            raise UserError(
                f"source {s.name!r} has license {s.license!r}, which is not in allowed_licenses ({', '.join(allowed)})"
            )
        if not s.allow_training:
            raise UserError(f"source {s.name!r} is marked allow_training: false")


def read_source(
    source: SourceConfig, path: Path, quarantine: Quarantine, counts: dict[str, int], seen_ids: set[str]
) -> Iterator[Conversation]:
    """Yield normalised Conversations from one source; count lines read into `counts`.

    Ids are made unique across the run (a repeated id gets `@<source>:<line>`), so every
    record in the splits and the quarantine can be told apart.
    """
    for line in iter_records_file(path, source.format):
        counts[source.name] = counts.get(source.name, 0) + 1
        origin = {"source": source.name, "path": source.path, "line": line.lineno}
        if line.error:
            quarantine.add("read", line.error, raw=line.raw, **origin)
            continue
        try:
            conv = to_conversation(line.value, source.name, f"{source.name}:{line.lineno}", source.columns)
        except RecordError as exc:
            quarantine.add("normalise", str(exc), raw=line.value, **origin)
            continue
        conv.source = source.name
        if conv.id in seen_ids:
            conv.id = f"{conv.id}@{source.name}:{line.lineno}"
        seen_ids.add(conv.id)
        conv.meta.update(path=source.path, line=line.lineno, license=source.license)
        yield conv
