"""Sharded curation: throughput on each executor, dedup memory per worker, and a projection to 10^9 records.

1. Throughput. The same generated corpus (benchmarks/curate_pipeline.py's records, 5% exact
   duplicates) with the workspace's default curate config plus fuzzy dedup, through the local
   engine in 1 process, the local pool of 2, and Ray on a local cluster of 1 and 2 CPUs (world
   size = CPUs; the cluster's start-up is counted). Prints records/s, the scaling ratios and
   checks that every executor wrote the same splits.
2. Dedup memory. The sharded stages with world size 1 (one worker holds a whole partition: the
   worst case) at 10^5 and 10^6 records, with exact and fuzzy dedup only; the peak memory
   traced (tracemalloc, NumPy included) while each dedup task runs, per record. The local
   engine's exact + fuzzy dedup steps are traced the same way at 10^5 for comparison.
3. Projection. Disk bytes per record of each stage's folder and the shuffle volume (what one
   stage writes by partition for other workers to read), measured at 10^6 and scaled to 10^9.

    python benchmarks/curate_scale.py --records 20000 --memory 100000,1000000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

from curate_pipeline import write_corpus

from tunewright.cli.main import main as cli
from tunewright.core.io import iter_jsonl
from tunewright.core.manifest import list_manifests, newest
from tunewright.core.workspace import init_workspace
from tunewright.curate.config import CurateConfig
from tunewright.curate.pipeline import Quarantine, chain
from tunewright.curate.shards.executors import InProcess
from tunewright.curate.shards.job import Job
from tunewright.curate.shards.tasks import run_task
from tunewright.curate.sources import read_source
from tunewright.curate.stage import run_curate
from tunewright.curate.steps import build_steps
from tunewright.demo.sample_data import write_sample_data

DEDUP = ("ids", "exact", "fuzzy_bands", "fuzzy_pairs", "fuzzy_components")
SHUFFLED = {"map": ("ids.p", "exact.p"), "fuzzy_bands": ("bands.p", "starts.p"), "fuzzy_pairs": ("pairs",)}
SOURCE = "sources=[{name: bulk, path: data/raw/bulk.jsonl, license: MIT}]"


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), platform.processor()
    )


def throughput(n: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "bulk.jsonl"
        lines = write_corpus(corpus, n, seed=0)
        for label, options in (
            ("local, 1 process", ["--workers", "1"]),
            ("local pool, 2 processes", ["--workers", "2"]),
            ("ray, 1 CPU", ["--executor", "ray", "scale.ray_workers=1"]),
            ("ray, 2 CPUs", ["--executor", "ray", "scale.ray_workers=2"]),
        ):
            ws = Path(tmp) / label.replace(" ", "").replace(",", "")
            init_workspace(ws)
            write_sample_data(ws / "data/raw")
            shutil.copy(corpus, ws / "data/raw/bulk.jsonl")
            began = time.perf_counter()
            code = cli(["curate", "-w", str(ws), *options, SOURCE, "fuzzy_dedup.enabled=true"])
            seconds = time.perf_counter() - began
            if code != 0:
                raise SystemExit(code)
            splits = newest([m for m in list_manifests(ws) if m["stage"] == "curate"])["results"]["split_sha256"]
            rows.append((label, seconds, splits))
    print(f"\n## Throughput: {lines} records, default config + fuzzy dedup, {cpu_name()}, {os.cpu_count()} CPUs")
    print("| executor | seconds | records/s |")
    print("|---|---:|---:|")
    for label, seconds, _ in rows:
        print(f"| {label} | {seconds:.1f} | {lines / seconds:.0f} |")
    rate = {label: lines / seconds for label, seconds, _ in rows}
    print(
        f"pool 2 / local 1: {rate['local pool, 2 processes'] / rate['local, 1 process']:.2f}x; "
        f"ray 2 / ray 1: {rate['ray, 2 CPUs'] / rate['ray, 1 CPU']:.2f}x; "
        f"ray 2 / local pool 2: {rate['ray, 2 CPUs'] / rate['local pool, 2 processes']:.2f}x"
    )
    same = all(r[2] == rows[0][2] for r in rows)
    print(f"identical splits on every executor: {same}")
    if not same:
        raise SystemExit("the executors disagree")


class Traced(InProcess):
    """Runs the tasks in this process, tracing the peak memory of each dedup task."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}

    def world_size(self, scale: object) -> int:
        return 1

    def run(self, job: Job, stage: str, tasks: int, what: str) -> dict[str, int]:
        for index in range(tasks):
            if stage in DEDUP:
                tracemalloc.start()
            run_task(job, stage, index)
            if stage in DEDUP:
                self.peaks[stage] = max(self.peaks.get(stage, 0), tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        return {"ran": tasks, "reused": 0}


def _folder_bytes(path: Path, prefixes: tuple[str, ...] | None = None) -> int:
    return sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file() and (prefixes is None or f.name.startswith(prefixes))
    )


def memory(n: int, streaming: bool) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Peak bytes per record of each dedup task (and of the local engine's dedup steps); disk and shuffle per record."""
    from tunewright.curate import stage as stage_module

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        init_workspace(ws)
        lines = write_corpus(ws / "bulk.jsonl", n, seed=1)
        cfg = CurateConfig.model_validate(
            {
                "sources": [{"name": "bulk", "path": "bulk.jsonl", "license": "MIT"}],
                "executor": "ray",
                "clean": {"enabled": False},
                "quality": {"enabled": False},
                "language": {"enabled": False},
                "pii": {"enabled": False},
                "decontaminate": {"enabled": False},
                "fuzzy_dedup": {"enabled": True},
                "scale": {"world_size": 1, "shard_mb": 1024},
            }
        )
        traced = Traced()
        original = stage_module.executor_for
        stage_module.executor_for = lambda kind, scale: traced
        try:
            run_curate(ws, cfg, ["benchmark"])
        finally:
            stage_module.executor_for = original
        per_record = {stage: peak / lines for stage, peak in traced.peaks.items()}
        work = ws / "data/.curate-work/records"
        disk = {}
        for d in sorted(work.iterdir()):
            stage = d.name.rsplit("-", 1)[0]
            shuffled = _folder_bytes(d, SHUFFLED[stage]) if stage in SHUFFLED else 0
            disk[stage] = (_folder_bytes(d) / lines, shuffled / lines)
        if streaming:
            local = cfg.model_copy(update={"executor": "local"})
            steps = [s for s in build_steps(local, ws, ws) if s.name in ("exact_dedup", "fuzzy_dedup")]
            quarantine = Quarantine(ws / "q", keep=0)
            source = local.sources[0]
            tracemalloc.start()
            for _ in chain(read_source(source, ws / "bulk.jsonl", quarantine, {}, set()), steps, quarantine):
                pass
            per_record["local engine: exact + fuzzy steps"] = tracemalloc.get_traced_memory()[1] / lines
            tracemalloc.stop()
        assert sum(1 for _ in iter_jsonl(ws / "bulk.jsonl")) == lines
    return per_record, disk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000, help="corpus of the throughput runs (0: skip them)")
    ap.add_argument("--memory", default="100000,1000000", help="corpus sizes of the memory runs")
    args = ap.parse_args()
    if args.records:
        throughput(args.records)
    sizes = [int(x) for x in args.memory.split(",") if x]
    results = {n: memory(n, streaming=n == sizes[0]) for n in sizes}
    print(f"\n## Dedup memory per record in one worker (world size 1), peak traced bytes, {cpu_name()}")
    stages = [*DEDUP, "local engine: exact + fuzzy steps"]
    print("| task | " + " | ".join(f"{n:,} records" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for stage in stages:
        cells = [f"{results[n][0][stage]:.0f}" if stage in results[n][0] else "-" for n in sizes]
        print(f"| {stage} | " + " | ".join(cells) + " |")
    n = sizes[-1]
    disk = results[n][1]
    print(f"\n## Disk and shuffle per record (measured at {n:,}), projected to 10^9 records")
    print("| stage | disk B/record | shuffle B/record | disk at 10^9 | shuffle at 10^9 |")
    print("|---|---:|---:|---:|---:|")
    for stage, (on_disk, shuffled) in disk.items():
        print(f"| {stage} | {on_disk:.0f} | {shuffled:.0f} | {on_disk:.0f} GB | {shuffled:.0f} GB |")
    total_disk = sum(d for d, _ in disk.values())
    total_shuffle = sum(s for _, s in disk.values())
    tb = (total_disk / 1000, total_shuffle / 1000)
    print(f"| total | {total_disk:.0f} | {total_shuffle:.0f} | {tb[0]:.1f} TB | {tb[1]:.1f} TB |")


if __name__ == "__main__":
    main()
