"""Typed configuration of `tunewright monitor` (`configs/monitor.yaml`).

Each field's docstring is its one-line description in `tunewright config show serve`.
"""

from __future__ import annotations

from pydantic import Field

from tunewright.core.config import StrictModel
from tunewright.core.thresholds import Thresholds


class DriftConfig(StrictModel):
    alpha: float = Field(0.01, gt=0, lt=1)
    """A drift test whose permutation p-value is below this flags drift."""
    permutations: int = Field(500, ge=50)
    """Permutations of the two-sample test."""
    min_prompts: int = Field(30, ge=2)
    """Fewer prompts on either side: no test (reported as such)."""
    max_prompts: int = Field(1000, ge=10)
    """Prompts taken per side at the most (a seeded sample)."""
    clusters: int = Field(8, ge=2)
    """Clusters of prompts compared to say which moved."""


class MonitorConfig(StrictModel):
    store: str = "monitor/capture.sqlite"
    """The capture store (relative to the workspace), as `serve` wrote it."""
    since_hours: float = Field(24 * 7, gt=0)
    """How far back to read."""
    window_hours: float = Field(24, gt=0)
    """Length of each time window (traffic, latency, quality are reported per window and served version)."""
    drift: DriftConfig = Field(default_factory=DriftConfig)
    """Input drift: an MMD two-sample test on MiniLM embeddings of the prompts."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """What a breach is (`monitor check` exits 1 on any); null turns a check off."""
    report: str = "reports/monitor-report.md"
    """The Markdown report (the HTML one is written beside it)."""
    alert_rules: str = "reports/monitor-alerts.yml"
    """Prometheus alerting rules for the server's /metrics, from the same thresholds."""
