"""The curation steps a config asks for, in their fixed order (for conversations, and for preference pairs)."""

from __future__ import annotations

from pathlib import Path

from tunewright.core.workspace import resolve
from tunewright.curate.clean import Clean
from tunewright.curate.config import CurateConfig
from tunewright.curate.decontaminate import Decontaminate, EvalNgramScan, load_eval_index
from tunewright.curate.dedup.exact import ExactDedup
from tunewright.curate.dedup.fuzzy import FuzzyDedup
from tunewright.curate.dedup.minhash import FuzzyParams
from tunewright.curate.dedup.semantic import SemanticDedup
from tunewright.curate.filters.empty import DistinctAnswers, DropEmpty
from tunewright.curate.filters.heuristic import build_filters
from tunewright.curate.filters.language import LanguageFilter
from tunewright.curate.filters.quality import QualityFilter
from tunewright.curate.pii import PiiStep
from tunewright.curate.pipeline import Step


def build_steps(cfg: CurateConfig, workspace: Path, scratch: Path | None = None) -> list[Step]:
    """The configured steps, in the default order; `scratch` is where dedup parks records."""
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
        steps.append(FuzzyDedup(FuzzyParams(**cfg.fuzzy_dedup.resolved()), cfg.workers, scratch))
    if cfg.semantic_dedup.enabled:
        sd = cfg.semantic_dedup
        steps.append(SemanticDedup(sd.threshold, sd.clusters, sd.seed, sd.model, scratch))
    if cfg.decontaminate.enabled and cfg.decontaminate.eval_sets:
        paths = [resolve(workspace, p) for p in cfg.decontaminate.eval_sets]
        d = cfg.decontaminate
        index = load_eval_index(paths, d.ngram, d.min_words)
        steps += [EvalNgramScan(index), Decontaminate(index, d.max_matches, scratch)]
    return steps


def build_pair_steps(cfg: CurateConfig, workspace: Path, scratch: Path | None = None) -> list[Step]:
    """The steps that make sense for preference pairs: cleaning, empty or identical answers, PII, exact and
    fuzzy dedup on prompt + chosen, decontamination. Quality and language filters judge answers a pair
    may deliberately make bad, so they are left out."""
    keep = (Clean, DropEmpty, PiiStep, ExactDedup, FuzzyDedup, EvalNgramScan, Decontaminate)
    steps = [s for s in build_steps(cfg, workspace, scratch) if isinstance(s, keep)]
    after_empty = next((i + 1 for i, s in enumerate(steps) if isinstance(s, DropEmpty)), 0)
    steps.insert(after_empty, DistinctAnswers())
    return steps
