"""`tunewright curate`: sources -> steps -> splits, with quarantine, data card and manifest.

Everything is computed before anything is written; the splits and quarantine directories
are then each replaced as a whole, so a failed run leaves the previous outputs intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunewright.core.errors import DataError
from tunewright.core.io import atomic_dir, sha256_file, write_jsonl, write_text
from tunewright.core.progress import progress_bar
from tunewright.core.records import Conversation
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve
from tunewright.curate.card import render_card
from tunewright.curate.clean import Clean
from tunewright.curate.config import CurateConfig
from tunewright.curate.decontaminate import Decontaminate, load_eval_index
from tunewright.curate.dedup.exact import ExactDedup
from tunewright.curate.dedup.fuzzy import FuzzyDedup
from tunewright.curate.dedup.minhash import FuzzyParams
from tunewright.curate.dedup.semantic import SemanticDedup
from tunewright.curate.filters.empty import DropEmpty
from tunewright.curate.filters.heuristic import build_filters
from tunewright.curate.filters.language import LanguageFilter
from tunewright.curate.filters.quality import QualityFilter
from tunewright.curate.pii import PiiStep
from tunewright.curate.pipeline import Quarantine, Step, run_steps
from tunewright.curate.sources import admit_sources, check_columns, read_source
from tunewright.curate.split import split_records

SPLITS = ("train", "validation", "test")


@dataclass
class CurationResult:
    splits: dict[str, list[Conversation]]
    quarantine: Quarantine
    steps: list[Step]
    lines_by_source: dict[str, int]
    split_hashes: dict[str, str]
    skipped_sources: dict[str, str]

    @property
    def lines_read(self) -> int:
        return sum(self.lines_by_source.values())


def build_steps(cfg: CurateConfig, workspace: Path) -> list[Step]:
    """The configured steps, in the default order."""
    steps: list[Step] = []
    if cfg.clean.enabled:
        steps.append(Clean(cfg.clean.fix_unicode, cfg.clean.strip_html))
    steps.append(DropEmpty())
    if cfg.quality.enabled:
        q = cfg.quality
        steps.append(QualityFilter(build_filters(q.preset, q.thresholds, q.disable), q.text))
    if cfg.language.enabled:
        lang = cfg.language
        steps.append(LanguageFilter(lang.languages, lang.min_score, lang.text))
    if cfg.pii.enabled:
        steps.append(PiiStep(cfg.pii.mode, cfg.pii.types, cfg.pii.salt))
    if cfg.exact_dedup:
        steps.append(ExactDedup())
    if cfg.fuzzy_dedup.enabled:
        steps.append(FuzzyDedup(FuzzyParams(**cfg.fuzzy_dedup.resolved()), workers=cfg.workers))
    if cfg.semantic_dedup.enabled:
        sd = cfg.semantic_dedup
        steps.append(SemanticDedup(sd.threshold, sd.clusters, sd.seed, sd.model))
    if cfg.decontaminate.enabled and cfg.decontaminate.eval_sets:
        paths = [resolve(workspace, p) for p in cfg.decontaminate.eval_sets]
        d = cfg.decontaminate
        steps.append(Decontaminate(load_eval_index(paths, d.ngram, d.min_words)))
    return steps


def curate(cfg: CurateConfig, workspace: Path, run: Run) -> CurationResult:
    """Run the curation pipeline and write splits, quarantine and data card atomically."""
    skipped = admit_sources(cfg.sources, cfg.allowed_licenses, cfg.on_disallowed)
    sources = [s for s in cfg.sources if s.name not in skipped]
    paths = {s.name: resolve(workspace, s.path) for s in sources}
    for source in sources:
        path = paths[source.name]
        if not path.is_file():
            raise DataError(f"source {source.name!r}: file not found: {path}")
        if path.stat().st_size == 0:
            raise DataError(f"source {source.name!r}: {path} is empty")
        check_columns(source, path)
        run.add_input(path)
    steps = build_steps(cfg, workspace)
    for p in cfg.decontaminate.eval_sets if cfg.decontaminate.enabled else []:
        run.add_input(resolve(workspace, p))
    quarantine = Quarantine()
    counts: dict[str, int] = {}
    seen_ids: set[str] = set()

    def records() -> Iterator[Conversation]:
        with progress_bar("curating", total=None) as advance:
            for source in sources:
                for rec in read_source(source, paths[source.name], quarantine, counts, seen_ids):
                    advance(1)
                    yield rec

    kept = run_steps(records(), steps, quarantine)
    if not kept:
        raise DataError("no records left after curation; see the quarantine reasons")
    splits = split_records(kept, cfg.split.validation, cfg.split.test, cfg.split.seed)
    if not splits["train"]:
        raise DataError("the train split is empty; lower split.validation / split.test")
    return _write(cfg, workspace, run, kept, splits, CurationResult(splits, quarantine, steps, counts, {}, skipped))


def _write(
    cfg: CurateConfig,
    workspace: Path,
    run: Run,
    kept: list[Conversation],
    splits: dict[str, list[Conversation]],
    result: CurationResult,
) -> CurationResult:
    out = cfg.output
    curated = resolve(workspace, out.curated)
    write_jsonl(curated, (r.to_dict() for r in kept))
    splits_dir = resolve(workspace, out.splits_dir)
    with atomic_dir(splits_dir) as tmp:
        for name in SPLITS:
            write_jsonl(tmp / f"{name}.jsonl", (r.to_dict() for r in splits[name]))
    with atomic_dir(resolve(workspace, out.quarantine_dir)) as tmp:
        for step, entries in result.quarantine.entries.items():
            write_jsonl(tmp / f"{step}.jsonl", entries)
    result.split_hashes = {name: sha256_file(splits_dir / f"{name}.jsonl") for name in SPLITS}
    card = resolve(workspace, out.data_card)
    write_text(card, render_card(cfg, result))
    for path in (curated, splits_dir, resolve(workspace, out.quarantine_dir), card):
        run.add_output(path)
    run.results.update(
        lines_read=result.lines_read,
        skipped_sources=result.skipped_sources,
        kept=len(kept),
        quarantined=result.quarantine.count(),
        modified=result.quarantine.count("modified"),
        quarantine_by_step={k: len(v) for k, v in result.quarantine.entries.items()},
        pii_counts=next((dict(s.counts) for s in result.steps if isinstance(s, PiiStep)), {}),
        splits={k: len(v) for k, v in splits.items()},
        split_sha256=result.split_hashes,
    )
    return result
