"""Typed configuration of `tunewright eval` (the YAML in `configs/eval.yaml`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tunewright.core.config import StrictModel


class TaskConfig(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    data: str


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(8, gt=0)


class GateConfig(StrictModel):
    metric: str = Field(pattern=r"^[A-Za-z0-9_-]+\.[a-z_]+$")
    op: Literal[">=", ">", "<=", "<"] = ">="
    threshold: float


class EvalConfig(StrictModel):
    tasks: list[TaskConfig] = Field(min_length=1)
    format_regex: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    gates: list[GateConfig] = Field(default_factory=list)
    report: str = "reports/eval-report.md"

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
