"""Typed configuration of `tunewright curate` (the YAML in `configs/curate.yaml`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunewright.core.config import StrictModel


class SourceConfig(StrictModel):
    """One raw source: where it is, its shape, and whether we may train on it."""

    name: str
    path: str
    format: Literal["jsonl", "parquet", "csv"] = "jsonl"
    license: str
    allow_training: bool = True
    columns: dict[str, str] = Field(default_factory=dict)


FUZZY_PRESETS = {
    "nemo": {"shingle": "char", "ngram": 24, "bands": 20, "rows": 13, "seed": 42},
    "word5": {"shingle": "word", "ngram": 5, "bands": 20, "rows": 13, "seed": 42},
    # NeMo's shingles and signature size, banded for recall: a pair at Jaccard 0.8 becomes a
    # candidate with probability 0.95 (0.68 with 20 x 13); pair it with jaccard_threshold.
    "recall": {"shingle": "char", "ngram": 24, "bands": 26, "rows": 10, "seed": 42},
}


class FuzzyDedupConfig(StrictModel):
    """MinHash LSH near-duplicate removal; a preset, with any field overridable."""

    enabled: bool = False
    preset: Literal["nemo", "word5", "recall"] = "nemo"
    shingle: Literal["char", "word"] | None = None
    ngram: int | None = Field(None, gt=0)
    bands: int | None = Field(None, gt=0)
    rows: int | None = Field(None, gt=0)
    seed: int | None = None
    jaccard_threshold: float | None = Field(None, gt=0, le=1)

    def resolved(self) -> dict[str, object]:
        """The preset with explicit fields applied on top."""
        values = dict(FUZZY_PRESETS[self.preset])
        for key in ("shingle", "ngram", "bands", "rows", "seed"):
            if getattr(self, key) is not None:
                values[key] = getattr(self, key)
        values["jaccard_threshold"] = self.jaccard_threshold
        return values


class CleanConfig(StrictModel):
    enabled: bool = True
    fix_unicode: bool = True
    strip_html: bool = False


class QualityConfig(StrictModel):
    """Heuristic filters: `sft` preset for instruction data (default), `nemo` for web documents."""

    enabled: bool = True
    preset: Literal["sft", "nemo"] = "sft"
    text: Literal["assistant", "all"] = "assistant"
    thresholds: dict[str, dict[Literal["min", "max", "min_words"], float]] = Field(default_factory=dict)
    disable: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_filters(self) -> QualityConfig:
        from tunewright.curate.filters.heuristic import SPECS

        unknown = sorted((set(self.thresholds) | set(self.disable)) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
        return self


class LanguageConfig(StrictModel):
    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    min_score: float = Field(0.5, ge=0, le=1)
    text: Literal["assistant", "all"] = "all"


class PiiConfig(StrictModel):
    enabled: bool = True
    mode: Literal["redact", "mask", "hash", "drop", "report"] = "redact"
    types: list[Literal["email", "phone", "credit_card", "ssn", "ip_address", "iban", "secret"]] = Field(
        default_factory=lambda: ["email", "phone", "credit_card", "ssn", "ip_address", "iban", "secret"]
    )
    salt: str = ""


class SemanticDedupConfig(StrictModel):
    """SemDeDup with all-MiniLM-L6-v2: k-means, then drop pairs above a cosine threshold."""

    enabled: bool = False
    threshold: float = Field(0.97, gt=0, le=1)
    clusters: int | None = Field(None, gt=0)
    seed: int = 42
    model: str | None = None


class DecontaminateConfig(StrictModel):
    enabled: bool = True
    eval_sets: list[str] = Field(default_factory=list)
    ngram: int = Field(13, gt=0)
    min_words: int = Field(5, gt=0)


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
    on_disallowed: Literal["error", "skip"] = "error"
    clean: CleanConfig = Field(default_factory=CleanConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    exact_dedup: bool = True
    fuzzy_dedup: FuzzyDedupConfig = Field(default_factory=FuzzyDedupConfig)
    semantic_dedup: SemanticDedupConfig = Field(default_factory=SemanticDedupConfig)
    workers: int = Field(1, ge=1)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
