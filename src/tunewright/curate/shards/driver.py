"""A curation pass run as shards: plan, run the stages on an executor, gather the outputs.

The pass gives the same splits and quarantine as `stage._pass` reading the sources in one
process; the gathering at the end only concatenates the shards' parts in shard order
(input order) and merges their tallies, whose size does not grow with the corpus (length
histograms, not lists), so the data card and the run record are built as usual.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tunewright.core.completions import code_version
from tunewright.core.io import sha256_file
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve, workspace_relative
from tunewright.curate.card import EXAMPLES_PER_STEP
from tunewright.curate.config import CurateConfig, SourceConfig
from tunewright.curate.decontaminate import Decontaminate
from tunewright.curate.pipeline import Quarantine, Step
from tunewright.curate.result import CurationResult, KeptRecords
from tunewright.curate.shards.executors import InProcess, RayTasks
from tunewright.curate.shards.job import Job, assign_keys, job_root, prepare, prune
from tunewright.curate.shards.plan import plan_shards
from tunewright.curate.shards.stages import SPLITS
from tunewright.curate.shards.store import load_pickle

MB = 2**20


def make_job(
    cfg: CurateConfig,
    workspace: Path,
    run: Run | None,
    sources: list[SourceConfig],
    steps: list[Step],
    world: int,
    pairs: bool,
) -> Job:
    """Plan the shards of `sources` and key every stage of the pass (`run`: its recorded input digests)."""
    paths = [resolve(workspace, s.path) for s in sources]
    files = [(i, path, s.format) for i, (s, path) in enumerate(zip(sources, paths, strict=True))]
    job = Job(
        workspace=str(workspace),
        config=cfg.model_dump(mode="json"),
        pairs=pairs,
        sources=sources,
        shards=plan_shards(files, world, int(cfg.scale.shard_mb * MB)),
        partitions=world,
        root=str(job_root(workspace, cfg, pairs)),
        step_names=[s.name for s in steps],
    )
    digests = {e["path"]: e["sha256"] for e in run.inputs} if run is not None else {}
    evals = [resolve(workspace, p) for p in cfg.decontaminate.eval_sets] if "decontaminate" in job.step_names else []
    inputs = []
    for path in [*paths, *evals]:
        rel = workspace_relative(workspace, path)
        inputs.append((rel, digests.get(rel) or sha256_file(path)))
    assign_keys(job, inputs, code_version())
    return job


def run_stages(job: Job, tasks: InProcess | RayTasks, what: str) -> dict[str, dict[str, int]]:
    """Every stage of the pass, in order; per stage: tasks, and how many ran or were reused."""
    prepare(job)
    return {stage: {"tasks": n, **tasks.run(job, stage, n, what)} for stage, n in job.stages()}


def gather(
    job: Job, steps: list[Step], quarantine_dir: Path, curated: Path, splits: Path, prefix: str, skipped: dict[str, str]
) -> CurationResult:
    """Concatenate the shards' parts into the staged outputs and merge their tallies into a result."""
    quarantine = Quarantine(None, keep=EXAMPLES_PER_STEP)
    lines: Counter[str] = Counter()
    per_record = [s for s in steps if s.per_record]
    for d in job.task_dirs("map"):
        tally = load_pickle(d / "tally.pkl")
        lines.update(tally["lines"])
        for step, tallies in zip(per_record, tally["steps"], strict=True):
            step.absorb(tallies)
        quarantine.tally.update(tally["quarantine"])
        quarantine.modified_elsewhere += tally["modified"]
    kept = KeptRecords()
    hists: dict[str, dict[str, Counter[int]]] = {
        n: {"prompt_words": Counter(), "answer_words": Counter()} for n in SPLITS
    }
    by_name = {s.name: s for s in steps}
    parts = job.task_dirs("assemble")
    for d in parts:
        tally = load_pickle(d / "tally.pkl")
        kept.merge(tally["kept"])
        for name in SPLITS:
            for side, hist in tally["lengths"][name].items():
                hists[name][side].update(hist)
        for name, st in tally["steps"].items():
            step = by_name[name]
            step.stats.records_in += st["in"]
            step.stats.records_out += st["out"]
            step.stats.reasons.update(st["reasons"])
            if isinstance(step, Decontaminate):
                step.matches.update(tally["matches"])
        quarantine.tally.update(tally["quarantine"])
    for step in steps:
        if isinstance(step, Decontaminate):
            step.frequency, step.ignored = Counter(job.frequency()), job.ignored() or {}
    _concat_quarantine(parts, quarantine_dir, quarantine)
    _concat([d / "curated.jsonl" for d in parts], curated)
    hashes = _split(parts, splits, prefix)
    sizes = {name: sum(hists[name]["prompt_words"].values()) for name in SPLITS}
    return CurationResult(sizes, quarantine, steps, dict(lines), skipped, kept, [], hashes, hists)


def _concat(parts: list[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out)


def _split(parts: list[Path], splits: Path, prefix: str) -> dict[str, str]:
    """Each split's file: the shards' kept lines in order, each to the split its shard gave it; their sha256."""
    files = {name: (splits / f"{prefix}{name}.jsonl").open("wb") for name in SPLITS}
    try:
        for d in parts:
            with (d / "curated.jsonl").open("rb") as fh:
                for line, split in zip(fh, np.load(d / "splits.npy").tolist(), strict=True):
                    files[SPLITS[split]].write(line)
    finally:
        for fh in files.values():
            fh.close()
    return {name: sha256_file(splits / f"{prefix}{name}.jsonl") for name in SPLITS}


def _concat_quarantine(parts: list[Path], target: Path, quarantine: Quarantine) -> None:
    """Each step's entries from every shard, in shard order; the first few kept as the data card's examples."""
    target.mkdir(parents=True, exist_ok=True)
    names = sorted({p.name for d in parts for p in (d / "quarantine").glob("*.jsonl")})
    for name in names:
        step = name.removesuffix(".jsonl")
        examples: list[dict[str, Any]] = []
        with (target / name).open("wb") as out:
            for d in parts:
                part = d / "quarantine" / name
                if not part.is_file():
                    continue
                with part.open("rb") as fh:
                    for line in fh:
                        if len(examples) < EXAMPLES_PER_STEP:
                            examples.append(json.loads(line))
                        out.write(line)
        if examples:
            quarantine.entries[step] = examples


def sharded_pass(
    cfg: CurateConfig,
    workspace: Path,
    run: Run,
    tasks: InProcess | RayTasks,
    sources: list[SourceConfig],
    steps: list[Step],
    outputs: tuple[Path, Path, Path, str],
    skipped: dict[str, str],
    what: str,
) -> CurationResult:
    """One pass over `sources` as shards on `tasks`; `outputs`: quarantine dir, curated file, splits dir, prefix."""
    job = make_job(cfg, workspace, run, sources, steps, tasks.world_size(cfg.scale), "pair" in what)
    stats = run_stages(job, tasks, what)
    result = gather(job, steps, *outputs, skipped)
    prune(job)
    run.results.setdefault("sharding", {})[what] = {
        "executor": cfg.executor,
        "shards": len(job.shards),
        "partitions": job.partitions,
        "work_dir": run.rel(Path(job.root)),
        "stages": stats,
    }
    return result
