"""Typed configuration of `tunewright curate` (the YAML in `configs/curate.yaml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunewright.core.config import StrictModel


class SourceConfig(StrictModel):
    """One raw source: where it is, its shape, and whether we may train on it."""

    name: str
    path: str
    format: Literal["jsonl", "parquet"] = "jsonl"
    license: str
    allow_training: bool = True
    columns: dict[str, str] = Field(default_factory=dict)


class DecontaminateConfig(StrictModel):
    enabled: bool = True
    eval_sets: list[str] = Field(default_factory=list)


class SplitConfig(StrictModel):
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave room for train (sum < 1)")
        return self


class OutputConfig(StrictModel):
    curated: str = "data/curated/curated.jsonl"
    splits_dir: str = "data/splits"
    quarantine_dir: str = "data/quarantine"
    data_card: str = "reports/data-card.md"


class CurateConfig(StrictModel):
    sources: list[SourceConfig] = Field(min_length=1)
    allowed_licenses: list[str] = Field(default_factory=lambda: ["CC-BY-4.0", "Apache-2.0", "MIT"])
    exact_dedup: bool = True
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
