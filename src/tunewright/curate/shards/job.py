"""A sharded curation pass as data: its shards, partitions, stages and the key of each stage.

A `Job` is what every task needs and nothing more; it pickles (Ray ships it to workers,
Slurm array tasks load it from the work directory). Each stage works in
`<work_dir>/<pass>/<stage>-<key prefix>/`, a folder holding its full key in `KEY`; task
`i` writes `t<i>/` through a temporary folder and then `t<i>.done.json`, the task's
completion record. The key digests the stage's own settings, the code version and the
key of the stage before it (the first stage: the input files' digests and the shard plan),
so a changed setting gives that stage and every later one new keys and new folders, while
earlier stages keep theirs and are reused shard by shard.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tunewright.core.completions import work_key
from tunewright.core.errors import UserError
from tunewright.core.pii import scrubber
from tunewright.core.workspace import resolve
from tunewright.curate.config import CurateConfig, SourceConfig
from tunewright.curate.decontaminate import NgramIndex
from tunewright.curate.dedup.minhash import FuzzyParams
from tunewright.curate.pipeline import Step
from tunewright.curate.shards.plan import Shard, ShardIndex
from tunewright.curate.shards.store import RecordLookup, load_pickle
from tunewright.curate.steps import build_pair_steps, build_steps

# name, how many tasks ("shards" | "partitions" | "one"), the step it needs (None: always); in order
STAGES: list[tuple[str, str, str | None]] = [
    ("map", "shards", None),
    ("ids", "partitions", None),
    ("exact", "partitions", "exact_dedup"),
    ("fuzzy_bands", "shards", "fuzzy_dedup"),
    ("fuzzy_pairs", "partitions", "fuzzy_dedup"),
    ("fuzzy_components", "one", "fuzzy_dedup"),
    ("decontam_count", "shards", "decontaminate"),
    ("decontam_ignored", "one", "decontaminate"),
    ("rank", "shards", None),
    ("bounds", "one", None),
    ("assemble", "shards", None),
]


@dataclass
class Job:
    """One pass (conversations or preference pairs) of a sharded curation."""

    workspace: str
    config: dict[str, Any]
    pairs: bool
    sources: list[SourceConfig]
    shards: list[Shard]
    partitions: int
    root: str
    step_names: list[str]
    keys: dict[str, str] = field(default_factory=dict)

    @cached_property
    def cfg(self) -> CurateConfig:
        return CurateConfig.model_validate(self.config)

    @cached_property
    def _steps(self) -> list[Step]:
        build = build_pair_steps if self.pairs else build_steps
        return build(self.cfg, Path(self.workspace))

    def per_record_steps(self) -> list[Step]:
        """The steps each shard runs on its own records, in the configured order."""
        return [s for s in self._steps if s.per_record]

    def global_steps(self) -> list[str]:
        """The steps decided over all shards (exact and fuzzy dedup, decontamination), in order."""
        return [s.name for s in self._steps if not s.per_record]

    @property
    def exact(self) -> bool:
        return "exact_dedup" in self.step_names

    def fuzzy_params(self) -> FuzzyParams:
        return FuzzyParams(**self.cfg.fuzzy_dedup.resolved())  # type: ignore[arg-type]

    def eval_index(self) -> NgramIndex:
        return next(s.index for s in self._steps if s.name == "decontaminate")  # type: ignore[attr-defined]

    def scrub(self) -> Callable[[str], str] | None:
        pii = self.cfg.pii
        return scrubber(pii.mode, pii.types, pii.salt) if pii.enabled else None

    def stages(self) -> list[tuple[str, int]]:
        """(stage, number of tasks) of the stages this pass runs, in order."""
        counts = {"shards": len(self.shards), "partitions": self.partitions, "one": 1}
        return [(name, counts[n]) for name, n, needs in STAGES if needs is None or needs in self.step_names]

    def has(self, stage: str) -> bool:
        return stage in self.keys

    def stage_dir(self, stage: str) -> Path:
        return Path(self.root) / f"{stage}-{self.keys[stage][:16]}"

    def task_dir(self, stage: str, index: int) -> Path:
        return self.stage_dir(stage) / f"t{index}"

    def task_dirs(self, stage: str) -> list[Path]:
        n = dict(self.stages())[stage]
        return [self.task_dir(stage, i) for i in range(n)]

    @cached_property
    def _index(self) -> ShardIndex:
        return ShardIndex(self.shards)

    def shard_of(self, order: int) -> int:
        return self._index.shard_of(order)

    def shard_of_many(self, orders: np.ndarray) -> np.ndarray:
        starts = np.array([s.first_order for s in self.shards], dtype=np.int64)
        return np.searchsorted(starts, orders, side="right") - 1

    def lookup(self, stage: str) -> RecordLookup:
        return RecordLookup(self.task_dirs(stage), self.shard_of)

    @cached_property
    def _renames(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for d in self.task_dirs("ids"):
            out.update(load_pickle(d / "renames.pkl"))
        return out

    def renames(self) -> dict[int, str]:
        """Order key -> final id, for the records whose id an earlier record already had."""
        return self._renames

    @cached_property
    def _ignored(self) -> dict[str, Any] | None:
        if not self.has("decontam_ignored"):
            return None
        return load_pickle(self.task_dir("decontam_ignored", 0) / "ignored.pkl")

    def ignored(self) -> dict[str, int] | None:
        """Matched eval n-grams too common in the corpus to count (None: no decontamination)."""
        return None if self._ignored is None else self._ignored["ignored"]

    def frequency(self) -> dict[str, int]:
        return {} if self._ignored is None else self._ignored["frequency"]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "cfg"}


def assign_keys(job: Job, inputs: list[tuple[str, str]], version: str) -> None:
    """Each stage's key: its settings, the code version and the key of the stage before it."""
    cfg = job.cfg
    fuzzy = cfg.fuzzy_dedup.resolved()
    own: dict[str, Any] = {
        "map": {
            "pairs": job.pairs,
            "inputs": inputs,
            "sources": [s.model_dump() for s in job.sources],
            "shards": [(s.source_index, s.start, s.end, s.first_line) for s in job.shards],
            "partitions": job.partitions,
            "steps": job.step_names,
            "settings": cfg.model_dump(include={"clean", "quality", "language", "pii"}),
            "decontaminate": cfg.decontaminate.model_dump(include={"eval_sets", "ngram", "min_words"}),
        },
        "fuzzy_bands": {k: v for k, v in fuzzy.items() if k != "jaccard_threshold"},
        "fuzzy_pairs": fuzzy["jaccard_threshold"],
        "decontam_ignored": cfg.decontaminate.max_matches,
        "rank": cfg.split.model_dump(),
    }
    previous = version
    for name, _ in job.stages():
        previous = job.keys[name] = work_key(name, own.get(name), previous)


def prepare(job: Job) -> None:
    """Create each stage's folder with its key, refusing one that holds another key."""
    for name, _ in job.stages():
        d = job.stage_dir(name)
        marker = d / "KEY"
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() != job.keys[name]:
            raise UserError(f"{d} holds work for another key: remove it, or set scale.work_dir to another folder")
        d.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            marker.write_text(job.keys[name] + "\n", encoding="utf-8")


def prune(job: Job) -> None:
    """Remove the folders of stage keys this pass no longer uses (a changed setting's old work)."""
    current = {job.stage_dir(name).name for name, _ in job.stages()}
    for d in Path(job.root).iterdir():
        if d.is_dir() and (d / "KEY").is_file() and d.name not in current:
            shutil.rmtree(d, ignore_errors=True)


def load_job(path: Path) -> Job:
    import pickle

    with path.open("rb") as fh:
        return pickle.load(fh)


def job_root(workspace: Path, cfg: CurateConfig, pairs: bool) -> Path:
    return resolve(workspace, cfg.scale.work_dir) / ("pairs" if pairs else "records")
