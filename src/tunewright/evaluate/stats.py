"""Metrics as per-item sufficient statistics, and paired bootstrap confidence intervals over items.

Every metric is stored as one row of statistics per item plus a function that turns the
column sums of any multiset of items into the metric's value. A mean is (value, 1) per
item with sum/count; perplexity is (nll, tokens) with exp(sum/sum); corpus BLEU and chrF
are sacrebleu's n-gram counts; macro-F1 is per-class tp/fp/fn. One representation lets a
bootstrap resample (a count per item) give the corpus-level value of any metric by a
matrix product, and the paired difference model − baseline uses the *same* resample for
both, which is what makes it paired: item difficulty cancels out. Intervals are percentile
intervals; the resamples come from a seeded generator so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Aggregate = Callable[[np.ndarray], np.ndarray]
CHUNK = 256


def ratio_of_sums(sums: np.ndarray) -> np.ndarray:
    """Column 0 over column 1 per row (a mean when the rows are (value, 1)); NaN where nothing counted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums[:, 1] > 0, sums[:, 0] / np.maximum(sums[:, 1], 1e-300), np.nan)


@dataclass
class Metric:
    """One metric of one task for one model: per-item statistics and how to aggregate them."""

    name: str
    stats: np.ndarray
    aggregate: Aggregate = ratio_of_sums
    higher_is_better: bool = True
    per_item: list[float | None] = field(default_factory=list)

    @property
    def value(self) -> float:
        return float(self.aggregate(self.stats.sum(0, keepdims=True))[0])


def mean_metric(name: str, values: list[float | None], higher_is_better: bool = True) -> Metric:
    """The mean over the items that have a value (None: not applicable to that item)."""
    stats = np.array([[v, 1.0] if v is not None else [0.0, 0.0] for v in values], dtype=np.float64)
    return Metric(name, stats.reshape(len(values), 2), ratio_of_sums, higher_is_better, list(values))


def resample_counts(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) counts: how often each item is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)


def _replicates(metric: Metric, counts: np.ndarray) -> np.ndarray:
    out = [metric.aggregate(counts[i : i + CHUNK] @ metric.stats) for i in range(0, len(counts), CHUNK)]
    return np.concatenate(out)


@dataclass
class Interval:
    value: float
    low: float
    high: float


def _interval(point: float, reps: np.ndarray, confidence: float) -> Interval:
    reps = reps[~np.isnan(reps)]
    if not len(reps) or np.isnan(point):
        return Interval(point, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return Interval(point, float(low), float(high))


def confidence_interval(metric: Metric, counts: np.ndarray, confidence: float) -> Interval:
    """The metric's value and its bootstrap percentile interval."""
    return _interval(metric.value, _replicates(metric, counts), confidence)


def paired_difference(model: Metric, baseline: Metric, counts: np.ndarray, confidence: float) -> Interval:
    """model − baseline and its interval, both computed on the same item resamples."""
    if model.stats.shape[0] != baseline.stats.shape[0]:
        raise ValueError(f"{model.name}: model and baseline were scored on different items")
    reps = _replicates(model, counts) - _replicates(baseline, counts)
    return _interval(model.value - baseline.value, reps, confidence)
