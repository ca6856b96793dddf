"""Typed configuration of `tunewright eval` (the YAML in `configs/eval.yaml`).

Each field's docstring is its one-line description in `tunewright config show eval`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tunewright.core.config import StrictModel


class TaskConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    """Task name, used in gate metrics as <task>.<metric>."""
    data: str
    """JSONL conversations whose last assistant turn is the reference answer."""


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(64, gt=0)
    """Longest answer generated, in tokens."""
    batch_size: int = Field(8, gt=0)
    """Prompts generated together."""


class GateConfig(StrictModel):
    metric: str = Field(pattern=r"^[A-Za-z0-9_-]+\.[a-z_]+$")
    """The metric gated, as <task>.<metric>, e.g. support.format_rate."""
    op: Literal[">=", ">", "<=", "<"] = ">="
    """Comparison with the threshold."""
    threshold: float
    """The value the metric must reach, fixed before any result exists."""


class EvalConfig(StrictModel):
    tasks: list[TaskConfig] = Field(min_length=1)
    """The evaluation tasks."""
    format_regex: str | None = None
    """An answer is well-formed when it matches this pattern (metric format_rate; null: not scored)."""
    fields: dict[str, str] = Field(default_factory=dict)
    """Named regexes with one capture group, compared between answer and reference (field_<name>, field_accuracy)."""
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    """How answers are generated (greedy)."""
    gates: list[GateConfig] = Field(default_factory=list)
    """Pass/fail thresholds; eval exits 1 when one fails for the model under test."""
    report: str = "reports/eval-report.md"
    """Where the Markdown report is written (a copy stays in the run)."""

    @field_validator("format_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    @field_validator("fields")
    @classmethod
    def _fields_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if re.compile(pattern).groups != 1:
                raise ValueError(f"field {name!r}: pattern needs exactly one capture group")
        return value
