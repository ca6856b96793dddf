"""Running one task of a sharded curation: skip it when its completion record exists, else do it and record it.

A task writes into a private temporary folder that is renamed into place when it is done,
then writes `t<i>.done.json` with the stage's key; `t<i>.started.json` says which host and
process took it (what a killed or lost task leaves behind). A task without a completion
record for the current key runs again, from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tunewright.core.io import write_json
from tunewright.curate.shards import stages
from tunewright.curate.shards.job import Job

FUNCTIONS: dict[str, Callable[[Job, int, Path], None]] = {
    "map": stages.map_shard,
    "ids": stages.ids_partition,
    "exact": stages.exact_partition,
    "fuzzy_bands": stages.fuzzy_bands,
    "fuzzy_pairs": stages.fuzzy_pairs,
    "fuzzy_components": stages.fuzzy_components,
    "decontam_count": stages.decontam_count,
    "decontam_ignored": stages.decontam_ignored,
    "rank": stages.rank,
    "bounds": stages.bounds,
    "assemble": stages.assemble,
}


def is_done(job: Job, stage: str, index: int) -> bool:
    record = job.stage_dir(stage) / f"t{index}.done.json"
    return record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("key") == job.keys[stage]


def run_task(job: Job, stage: str, index: int) -> str:
    """Run one task unless its completion record exists: "ran" or "reused"."""
    if is_done(job, stage, index):
        return "reused"
    d, host, pid = job.stage_dir(stage), socket.gethostname(), os.getpid()
    tmp = d / f".t{index}.{host}.{pid}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_json(d / f"t{index}.started.json", {"host": host, "pid": pid, "started": time.time()})
    began = time.monotonic()
    FUNCTIONS[stage](job, index, tmp)
    final = job.task_dir(stage, index)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done = {"key": job.keys[stage], "stage": stage, "task": index, "host": host, "pid": pid}
    write_json(d / f"t{index}.done.json", {**done, "seconds": round(time.monotonic() - began, 3)})
    return "ran"
