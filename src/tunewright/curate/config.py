"""Typed configuration of `tunewright curate` (the YAML in `configs/curate.yaml`).

Each field's docstring is its one-line description in `tunewright config show curate`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunewright.core.config import StrictModel


class SourceConfig(StrictModel):
    """One raw source: where it is, its shape, and whether we may train on it."""

    name: str
    """Source name, kept on every record (`source`) and in its id."""
    path: str
    """File to read (relative to the workspace or absolute)."""
    format: Literal["jsonl", "parquet", "csv"] = "jsonl"
    """jsonl | parquet | csv."""
    license: str
    """The data's license; it must be in allowed_licenses."""
    allow_training: bool = True
    """Whether the team may train on this source."""
    columns: dict[str, str] = Field(default_factory=dict)
    """Our field -> the input's column, e.g. {prompt: question, response: answer}."""
    kind: Literal["chat", "preference"] = "chat"
    """chat (conversations) | preference ({prompt, chosen, rejected} pairs, for objective: dpo)."""
    usage_note: str | None = None
    """Why the team may train on this data; required for production captures (`monitor export`)."""


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
    """Remove near duplicates (keeps the first of each cluster)."""
    preset: Literal["nemo", "word5", "recall"] = "nemo"
    """nemo (24-char shingles, 20 bands x 13 rows) | recall (26 x 10) | word5 (word 5-grams)."""
    shingle: Literal["char", "word"] | None = None
    """Override the preset's shingles: char | word."""
    ngram: int | None = Field(None, gt=0)
    """Override the preset's shingle length."""
    bands: int | None = Field(None, gt=0)
    """Override the preset's LSH bands."""
    rows: int | None = Field(None, gt=0)
    """Override the preset's rows per band."""
    seed: int | None = None
    """Override the preset's hash seed."""
    jaccard_threshold: float | None = Field(None, gt=0, le=1)
    """Verify LSH candidates with their true Jaccard similarity (null: trust LSH)."""

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
    """Clean text: control characters, whitespace, unicode (changed records are logged as modified)."""
    fix_unicode: bool = True
    """Repair mojibake and bad escapes with ftfy."""
    strip_html: bool = False
    """Keep only the visible text of HTML."""


class QualityConfig(StrictModel):
    """Heuristic filters: `sft` preset for instruction data (default), `nemo` for web documents."""

    enabled: bool = True
    """Apply the heuristic quality filters."""
    preset: Literal["sft", "nemo"] = "sft"
    """sft (thresholds for prompt/response pairs) | nemo (NeMo Curator's English web defaults)."""
    text: Literal["assistant", "all"] = "assistant"
    """The text the filters read: assistant (what is trained on) | all."""
    thresholds: dict[str, dict[Literal["min", "max", "min_words"], float]] = Field(default_factory=dict)
    """Per-filter overrides, e.g. {word_count: {min: 3}, urls: {max: 0.1}}."""
    disable: list[str] = Field(default_factory=list)
    """Filters to skip, e.g. [punctuation]."""

    @model_validator(mode="after")
    def _known_filters(self) -> QualityConfig:
        from tunewright.curate.filters.heuristic import SPECS

        unknown = sorted((set(self.thresholds) | set(self.disable)) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown filter(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
        return self


class LanguageConfig(StrictModel):
    enabled: bool = True
    """Keep only records in the listed languages (py3langid, offline)."""
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    """ISO 639-1 codes to keep."""
    min_score: float = Field(0.5, ge=0, le=1)
    """Minimum normalised probability of the detected language."""
    text: Literal["assistant", "all"] = "all"
    """The text identified: assistant | all."""


class PiiConfig(StrictModel):
    enabled: bool = True
    """Detect personal data (also scrubbed from what the quarantine stores)."""
    mode: Literal["redact", "mask", "hash", "drop", "report"] = "redact"
    """redact ([EMAIL]) | mask (keep last 4) | hash (salted) | drop (quarantine the record) | report (count only)."""
    types: list[Literal["email", "phone", "credit_card", "ssn", "ip_address", "iban", "secret"]] = Field(
        default_factory=lambda: ["email", "phone", "credit_card", "ssn", "ip_address", "iban", "secret"]
    )
    """Kinds of personal data detected."""
    salt: str = ""
    """Salt for mode: hash."""


class SemanticDedupConfig(StrictModel):
    """SemDeDup with all-MiniLM-L6-v2: k-means, then drop pairs above a cosine threshold."""

    enabled: bool = False
    """Remove records that repeat the meaning of another (embeds every record: slower)."""
    threshold: float = Field(0.97, gt=0, le=1)
    """Cosine similarity above which two records are duplicates."""
    clusters: int | None = Field(None, gt=0)
    """k-means clusters (null: sqrt of the number of records)."""
    seed: int = 42
    """k-means seed."""
    model: str | None = None
    """Sentence-embedding model directory (null: the packaged all-MiniLM-L6-v2)."""


class DecontaminateConfig(StrictModel):
    enabled: bool = True
    """Remove training records that contain n-grams of eval prompts."""
    eval_sets: list[str] = Field(default_factory=list)
    """Eval JSONL files whose user prompts must not appear in training data."""
    ngram: int = Field(13, gt=0)
    """Word n-gram length; shorter eval prompts count whole."""
    min_words: int = Field(5, gt=0)
    """Eval prompts shorter than this many words are ignored."""
    max_matches: int | None = Field(10, gt=0)
    """An n-gram found in more training records than this is common phrasing, not contamination (null: no limit)."""


class SplitConfig(StrictModel):
    validation: float = Field(0.1, ge=0, lt=1)
    """Share of records in the validation split."""
    test: float = Field(0.1, ge=0, lt=1)
    """Share of records in the test split."""
    seed: int = 42
    """Seed of the split assignment (same records + seed = same splits)."""

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must leave room for train (sum < 1)")
        return self


class OutputConfig(StrictModel):
    curated: str = "data/curated/curated.jsonl"
    """Every kept record, before splitting."""
    splits_dir: str = "data/splits"
    """Directory of train.jsonl, validation.jsonl, test.jsonl."""
    quarantine_dir: str = "data/quarantine"
    """Directory of <step>.jsonl: every removed or modified record with its reason."""
    data_card: str = "reports/data-card.md"
    """The data card (Markdown)."""


class SlurmArrayConfig(StrictModel):
    """How `executor: slurm` submits each stage (a job array, one task per shard or partition)."""

    partition: str | None = None
    """Slurm partition (null: the cluster's default)."""
    time: str | None = None
    """Wall-clock limit per task (HH:MM:SS)."""
    account: str | None = None
    """Account to charge."""
    cpus_per_task: int = Field(1, gt=0)
    """CPUs of each array task."""
    mem: str | None = None
    """Memory of each array task, e.g. 8G (null: the partition's default)."""
    max_parallel: int | None = Field(None, gt=0)
    """At most this many tasks of a stage at once (the array's %N)."""
    setup: list[str] = Field(default_factory=list)
    """Shell lines run before each task, e.g. [source .venv/bin/activate]."""
    sbatch_args: list[str] = Field(default_factory=list)
    """Other #SBATCH options, e.g. [--qos=batch]."""


class ScaleConfig(StrictModel):
    """Sharded curation (executor ray or slurm): shards, partitions, the work folder, the cluster."""

    world_size: int | None = Field(None, ge=1)
    """Shards and partitions at least this many (null: the Ray cluster's CPUs; slurm: 8)."""
    shard_mb: float = Field(64, gt=0)
    """Largest shard of a JSONL file, in MB (CSV and Parquet files are one shard each)."""
    work_dir: str = "data/.curate-work"
    """Intermediates and per-shard completion records (on a shared filesystem for slurm)."""
    ray_address: str | None = None
    """Ray cluster to use: host:port, ray://host:10001 or auto (null: start a local one)."""
    ray_workers: int | None = Field(None, ge=1)
    """CPUs of the local Ray cluster (null: all of this machine's)."""
    retries: int = Field(1, ge=0)
    """Times Ray retries a task whose worker died (0: the run stops; a rerun does only unfinished shards)."""
    slurm: SlurmArrayConfig = Field(default_factory=SlurmArrayConfig)
    """Job-array settings for executor slurm."""


class CurateConfig(StrictModel):
    sources: list[SourceConfig] = Field(min_length=1)
    """The raw sources."""
    allowed_licenses: list[str] = Field(default_factory=lambda: ["CC-BY-4.0", "Apache-2.0", "MIT"])
    """Licenses the team may train on."""
    on_disallowed: Literal["error", "skip"] = "error"
    """A source whose license is not allowed: error | skip (recorded in the data card)."""
    clean: CleanConfig = Field(default_factory=CleanConfig)
    """Text cleaning."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    """Heuristic quality filters (NeMo Curator's scores)."""
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    """Language identification."""
    pii: PiiConfig = Field(default_factory=PiiConfig)
    """Personal data."""
    exact_dedup: bool = True
    """Remove records whose normalised text is identical (keeps the first)."""
    fuzzy_dedup: FuzzyDedupConfig = Field(default_factory=FuzzyDedupConfig)
    """Near-duplicate removal with MinHash + LSH."""
    semantic_dedup: SemanticDedupConfig = Field(default_factory=SemanticDedupConfig)
    """Meaning-level duplicate removal (SemDeDup)."""
    workers: int = Field(1, ge=1)
    """Processes for the per-record steps (also: curate --workers N)."""
    executor: Literal["local", "ray", "slurm"] = "local"
    """local (this machine, with workers) | ray (sharded over a Ray cluster) | slurm (sharded, job arrays)."""
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    """Sharded curation: shards, work folder, Ray and Slurm settings."""
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    """Eval contamination removal."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Train / validation / test splits."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where the outputs go."""

    @model_validator(mode="after")
    def _sharded_steps(self) -> CurateConfig:
        if self.executor != "local" and self.semantic_dedup.enabled:
            raise ValueError("semantic_dedup.enabled: semantic dedup runs on executor local only")
        return self
