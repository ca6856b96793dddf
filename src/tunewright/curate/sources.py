"""Reading raw sources with provenance: license gate, line numbers, normalisation.

Each record gets `source` and its origin (`path`, `line`) in `meta`, and an id of
`<source>:<line>` unless the input has one. Unreadable lines and records of the wrong
shape go to the quarantine with their file and line number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tunewright.core.errors import DataError, UserError
from tunewright.core.io import Line, columns_of, iter_records_file
from tunewright.core.records import Conversation, PairRecord, RecordError, to_conversation, to_preference_pair
from tunewright.curate.config import SourceConfig
from tunewright.curate.pipeline import Quarantine


def license_problem(source: SourceConfig, allowed: list[str]) -> str | None:
    """Why a source may not be trained on, or None."""
    if source.license not in allowed:
        return f"license {source.license!r} is not in allowed_licenses ({', '.join(allowed)})"
    if not source.allow_training:
        return "it is marked allow_training: false"
    return None


def admit_sources(sources: list[SourceConfig], allowed: list[str], on_disallowed: str) -> dict[str, str]:
    """Stop (or, with `skip`, set aside) sources that may not be trained on; returns skipped -> reason."""
    skipped = {}
    for s in sources:
        problem = license_problem(s, allowed)
        if problem and on_disallowed == "error":
            raise UserError(f"source {s.name!r}: {problem} (set on_disallowed: skip to leave it out)")
        if problem:
            skipped[s.name] = problem
    return skipped


def check_columns(source: SourceConfig, path: Path) -> None:
    """A CSV or Parquet source must have the columns its mapping names."""
    present = columns_of(path, source.format)
    if present is None:
        return
    if not present:
        raise DataError(f"source {source.name!r}: {path} has no header / columns")
    wanted = set((source.columns or {}).values()) or {"prompt", "response"}
    if "messages" not in present and not wanted <= set(present):
        missing = sorted(wanted - set(present))
        raise DataError(
            f"source {source.name!r}: {path} lacks mapped column(s) {', '.join(missing)}; it has {', '.join(present)}"
        )


def read_source(
    source: SourceConfig,
    path: Path,
    quarantine: Quarantine,
    counts: dict[str, int],
    seen_ids: set[str] | None,
    lines: Iterable[Line] | None = None,
) -> Iterator[Conversation]:
    """Yield normalised Conversations from one source (or `lines` of it); count lines read into `counts`.

    Ids are made unique across the run (a repeated id gets `@<source>:<line>`), so every
    record in the splits and the quarantine can be told apart. Without `seen_ids` (a shard
    of a sharded run) that is left to the run's `ids` stage, which applies the same rule.
    """
    for line in iter_records_file(path, source.format) if lines is None else lines:
        counts[source.name] = counts.get(source.name, 0) + 1
        origin = {"source": source.name, "path": source.path, "line": line.lineno}
        if line.error:
            quarantine.add("read", line.error, raw=line.raw, **origin)
            continue
        try:
            rid = f"{source.name}:{line.lineno}"
            if source.kind == "preference":
                conv: Conversation = PairRecord.of(to_preference_pair(line.value, source.name, rid))
            else:
                conv = to_conversation(line.value, source.name, rid, source.columns)
        except RecordError as exc:
            quarantine.add("normalise", str(exc), raw=line.value, **origin)
            continue
        conv.source = source.name
        if seen_ids is not None:
            if conv.id in seen_ids:
                conv.id = f"{conv.id}@{source.name}:{line.lineno}"
            seen_ids.add(conv.id)
        conv.meta.update(path=source.path, line=line.lineno, license=source.license)
        yield conv
