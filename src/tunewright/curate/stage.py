"""`tunewright curate`: sources -> steps -> splits, with quarantine, data card and manifest.

Records stream through the steps (per-record steps in `workers` processes); the kept ones
go to the staged curated file with their split group key kept in memory, the quarantine
streams to its staged directory, and memory holds only the dedup indices and one group
key per kept record. Every output (curated file, splits, quarantine, data card) is staged
beside its final path and they all replace the previous ones together with the run
record (see `core.runs`), so a failed run leaves every previous output intact.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunewright.core.errors import DataError, UserError
from tunewright.core.io import sha256_file
from tunewright.core.manifest import load_manifest
from tunewright.core.pii import scrubber
from tunewright.core.progress import progress_bar
from tunewright.core.records import Conversation
from tunewright.core.runs import Run, start_run
from tunewright.core.workspace import resolve
from tunewright.curate.card import EXAMPLES_PER_STEP, render_card, render_pairs_section
from tunewright.curate.config import CurateConfig, SourceConfig
from tunewright.curate.parallel import stream_steps
from tunewright.curate.pii import PiiStep
from tunewright.curate.pipeline import Quarantine, Step
from tunewright.curate.result import CurationResult, KeptRecords
from tunewright.curate.shards.driver import sharded_pass
from tunewright.curate.shards.executors import InProcess, RayTasks, executor_for
from tunewright.curate.sources import admit_sources, check_columns, read_source
from tunewright.curate.split import assign_splits, group_key
from tunewright.curate.steps import build_pair_steps, build_steps

SPLITS = ("train", "validation", "test")
PAIRS_PREFIX = "pairs-"  # data/splits/pairs-train.jsonl ...: the preference pairs (objective: dpo)
PAIRS_CURATED = "pairs.jsonl"


def admitted_sources(cfg: CurateConfig, workspace: Path, run: Run | None) -> tuple[list[SourceConfig], dict[str, str]]:
    """The sources that may be trained on, checked and recorded as the run's inputs; and the skipped ones."""
    skipped = admit_sources(cfg.sources, cfg.allowed_licenses, cfg.on_disallowed)
    sources = [s for s in cfg.sources if s.name not in skipped]
    paths = {s.name: resolve(workspace, s.path) for s in sources}
    for source in sources:
        path = paths[source.name]
        if not path.is_file():
            raise DataError(f"source {source.name!r}: file not found: {path}")
        if path.stat().st_size == 0:
            raise DataError(f"source {source.name!r}: {path} is empty")
        if source.kind == "chat":
            check_columns(source, path)
    if run is not None:
        evals = [resolve(workspace, p) for p in cfg.decontaminate.eval_sets] if cfg.decontaminate.enabled else []
        for path in [*paths.values(), *evals]:
            run.add_input(path)
        _production_policy(sources, paths, run)
    return sources, skipped


def _from_production(workspace: Path, producer: str) -> bool:
    """Whether the run that wrote a source carried production traffic: a `monitor export`, or the review of a
    replay (its prompts are captured requests)."""
    manifest = load_manifest(workspace / "runs" / producer)
    if manifest["stage"] == "monitor-export":
        return True
    reviewed = (manifest.get("results") or {}).get("eval_run")
    if manifest["stage"] != "review" or not reviewed or not (workspace / "runs" / reviewed).is_dir():
        return False
    return bool(load_manifest(workspace / "runs" / reviewed).get("results", {}).get("replay"))


def _production_policy(sources: list[SourceConfig], paths: dict[str, Path], run: Run) -> None:
    """Production traffic (a `monitor export` file, a reviewed replay's pairs) is trained on only when its source
    says why it may be."""
    producers = {e["path"]: e.get("run") for e in run.inputs}
    for i, source in enumerate(sources):
        producer = producers.get(run.rel(paths[source.name]))
        if not producer or source.usage_note:
            continue
        if _from_production(run.workspace, producer):
            raise UserError(
                f"sources[{i}].usage_note: source {source.name!r} is production traffic exported by run {producer}; "
                "say why the team may train on it (consent, terms of use) in usage_note, and check its license"
            )


def curate(cfg: CurateConfig, workspace: Path, run: Run) -> CurationResult:
    """Run the curation pipeline and write splits, quarantine and data card atomically."""
    sources, skipped = admitted_sources(cfg, workspace, run)
    paths = {s.name: resolve(workspace, s.path) for s in sources}
    out = cfg.output
    staged = {
        "splits": run.output_dir(resolve(workspace, out.splits_dir)),
        "quarantine": run.output_dir(resolve(workspace, out.quarantine_dir)),
        "card": run.output_file(resolve(workspace, out.data_card)),
    }
    chat = [s for s in sources if s.kind == "chat"]
    pairs = [s for s in sources if s.kind == "preference"]
    result = pair_result = None
    with tempfile.TemporaryDirectory(prefix=".curate-", dir=run.dir.parent) as tmp, _tasks(cfg) as tasks:

        def one_pass(part: list[SourceConfig], steps: list[Step], outputs: tuple, skip: dict, what: str):
            if tasks is None:
                return _pass(cfg, part, paths, steps, outputs[0], outputs[1], skip, what)
            outs = (outputs[0], outputs[1], staged["splits"], outputs[2])
            return sharded_pass(cfg, workspace, run, tasks, part, steps, outs, skip, what)

        if chat or not pairs:
            staged["curated"] = run.output_file(resolve(workspace, out.curated))
            steps = build_steps(cfg, workspace, Path(tmp))
            result = one_pass(chat, steps, (staged["quarantine"], staged["curated"], ""), skipped, "records")
        if pairs:
            staged["pairs"] = run.output_file(resolve(workspace, out.curated).with_name(PAIRS_CURATED))
            steps = build_pair_steps(cfg, workspace, Path(tmp))
            outputs = (staged["quarantine"] / "pairs", staged["pairs"], PAIRS_PREFIX)
            pair_result = one_pass(pairs, steps, outputs, {}, "preference pairs")
    _write(cfg, run, staged, result, pair_result)
    return result or pair_result  # type: ignore[return-value]


@contextmanager
def _tasks(cfg: CurateConfig) -> Iterator[InProcess | RayTasks | None]:
    """Where a sharded curation's tasks run; None for the local (streaming) engine."""
    if cfg.executor == "local":
        yield None
        return
    with executor_for(cfg.executor, cfg.scale) as tasks:
        yield tasks


def _pass(
    cfg: CurateConfig,
    sources: list[SourceConfig],
    paths: dict[str, Path],
    steps: list[Step],
    quarantine_dir: Path,
    curated: Path,
    skipped: dict[str, str],
    what: str,
) -> CurationResult:
    """Read `sources` through `steps`, keep the survivors in `curated` and assign their splits."""
    scrub = scrubber(cfg.pii.mode, cfg.pii.types, cfg.pii.salt) if cfg.pii.enabled else None
    quarantine = Quarantine(quarantine_dir, keep=EXAMPLES_PER_STEP, scrub=scrub)
    counts: dict[str, int] = {}
    seen_ids: set[str] = set()

    def records() -> Iterator[Conversation]:
        with progress_bar(f"curating {what}", total=None) as advance:
            for source in sources:
                for rec in read_source(source, paths[source.name], quarantine, counts, seen_ids):
                    advance(1)
                    yield rec

    try:
        kept = _drain(stream_steps(records(), steps, quarantine, cfg.workers), curated, quarantine)
    finally:
        quarantine.close()
    names = assign_splits(kept.keys, cfg.split.validation, cfg.split.test, cfg.split.seed)
    sizes = Counter(names)
    return CurationResult({s: sizes[s] for s in SPLITS}, quarantine, steps, counts, skipped, kept, names)


def _drain(stream: Iterator[Conversation], path: Path, quarantine: Quarantine) -> KeptRecords:
    """Write the kept records to `path` as JSONL, tallying them (group keys, sources, lengths)."""
    kept = KeptRecords()
    with path.open("w", encoding="utf-8") as fh:
        for rec in stream:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            kept.add(rec, group_key(rec), rec.id in quarantine.modified_ids)
    return kept


def _split_files(curated: Path, splits_dir: Path, prefix: str, result: CurationResult) -> None:
    with curated.open(encoding="utf-8") as curated_lines:
        files = {name: (splits_dir / f"{prefix}{name}.jsonl").open("w", encoding="utf-8") for name in SPLITS}
        try:
            for line, name in zip(curated_lines, result.split_names, strict=True):
                files[name].write(line)
        finally:
            for fh in files.values():
                fh.close()
    result.split_hashes = {name: sha256_file(splits_dir / f"{prefix}{name}.jsonl") for name in SPLITS}


def _summary(result: CurationResult) -> dict[str, Any]:
    q = result.quarantine
    return {
        "lines_read": result.lines_read,
        "skipped_sources": result.skipped_sources,
        "kept": result.kept,
        "quarantined": q.count(),
        "modified_kept": result.kept_records.modified,
        "kept_by_source": dict(result.kept_records.by_source),
        "tool_use": result.kept_records.tool_use(),
        "quarantine_by_step": q.by_step(),
        "pii_counts": next((dict(s.counts) for s in result.steps if isinstance(s, PiiStep)), {}),
        "splits": result.split_counts,
        "split_sha256": result.split_hashes,
    }


def _write(
    cfg: CurateConfig,
    run: Run,
    staged: dict[str, Path],
    result: CurationResult | None,
    pairs: CurationResult | None,
) -> None:
    for what, res in (("records", result), ("preference pairs", pairs)):
        if res is not None and not res.kept:
            raise DataError(f"no {what} left after curation; see the quarantine reasons")
        if res is not None and not res.split_counts["train"]:
            raise DataError(f"the train split of the {what} is empty; lower split.validation / split.test")
    card = ""
    if result is not None:
        if not result.split_hashes:
            _split_files(staged["curated"], staged["splits"], "", result)
        card = render_card(cfg, result)
        run.results.update(_summary(result))
    if pairs is not None and not pairs.split_hashes:
        _split_files(staged["pairs"], staged["splits"], PAIRS_PREFIX, pairs)
    if pairs is not None:
        card = (card or "# Data card\n") + render_pairs_section(cfg, pairs)
        run.results["preference_pairs"] = _summary(pairs)
    staged["card"].write_text(card, encoding="utf-8")


def run_curate(workspace: Path, cfg: CurateConfig, command: list[str]) -> Run:
    """`tunewright curate` as a library call: the curation, recorded as a run; returns the completed run."""
    with start_run(workspace, "curate", command, cfg.model_dump(), seed=cfg.split.seed) as run:
        curate(cfg, workspace, run)
    return run
