"""Whole curation pipeline throughput with the shipped default config.

Builds a workspace with N generated prompt/response records (the embedded domain's
templates, each with a random free-text note so that most records are unique, plus 5%
exact duplicates), runs
`tunewright curate` in-process with the default `configs/curate.yaml`, and prints records/s
and the peak resident memory of the main process (workers hold one chunk each).

    python benchmarks/curate_pipeline.py --records 50000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

from tunewright.cli.main import main as cli
from tunewright.core.workspace import init_workspace
from tunewright.demo import domain
from tunewright.demo.sample_data import write_sample_data


def write_corpus(path: Path, n: int, seed: int) -> int:
    """Write the corpus line by line (the benchmark must not hold it in memory); returns lines written."""
    rng = random.Random(seed)
    cases = domain.all_cases()
    words = sorted({w for _, _, p in cases for w in p.lower().split()} | set(" ".join(domain.handbook(rng)).split()))
    written = 0
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            inc, table, prompt = rng.choice(cases)
            note = " ".join(rng.choices(words, k=30))
            answer = domain.answer(inc, table) + " Note: " + " ".join(rng.choices(words, k=30)) + "."
            line = json.dumps({"id": f"B{i}", "prompt": f"{prompt} Context: {note}.", "response": answer}) + "\n"
            copies = 2 if rng.random() < 0.05 else 1
            fh.write(line * copies)
            written += copies
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        init_workspace(ws)
        write_sample_data(ws / "data/raw")
        lines = write_corpus(ws / "data/raw/bulk.jsonl", args.records, seed=0)
        sources = "sources=[{name: bulk, path: data/raw/bulk.jsonl, license: MIT}]"
        t0 = time.perf_counter()
        code = cli(["curate", "-w", str(ws), "--workers", str(args.workers), sources])
        seconds = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(code)
    main_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"default curate config, {args.workers} worker(s): {lines} records in {seconds:.1f} s = "
        f"{lines / seconds:.0f} records/s; peak RSS of the main process {main_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
