"""Whole curation pipeline throughput with the shipped default config.

Builds a workspace with N generated prompt/response records (the embedded domain's
templates, each with a random free-text note so that most records are unique, plus 5%
exact duplicates), runs
`tunewright curate` in-process with the default `configs/curate.yaml`, and prints records/s.

    python benchmarks/curate_pipeline.py --records 50000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from tunewright.cli.main import main as cli
from tunewright.core.workspace import init_workspace
from tunewright.demo import domain
from tunewright.demo.sample_data import write_sample_data


def write_corpus(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    cases = domain.all_cases()
    words = sorted({w for _, _, p in cases for w in p.lower().split()} | set(" ".join(domain.handbook(rng)).split()))
    lines = []
    for i in range(n):
        inc, table, prompt = rng.choice(cases)
        note = " ".join(rng.choices(words, k=30))
        answer = domain.answer(inc, table) + " Note: " + " ".join(rng.choices(words, k=30)) + "."
        lines.append(json.dumps({"id": f"B{i}", "prompt": f"{prompt} Context: {note}.", "response": answer}))
        if rng.random() < 0.05:
            lines.append(lines[-1])
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        init_workspace(ws)
        write_sample_data(ws / "data/raw")
        write_corpus(ws / "data/raw/bulk.jsonl", args.records, seed=0)
        lines = len((ws / "data/raw/bulk.jsonl").read_text().splitlines())
        sources = "sources=[{name: bulk, path: data/raw/bulk.jsonl, license: MIT}]"
        t0 = time.perf_counter()
        code = cli(["curate", "-w", str(ws), "--workers", str(args.workers), sources])
        seconds = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(code)
    print(
        f"default curate config: {lines} records in {seconds:.1f} s = {lines / seconds:.0f} records/s "
        f"({args.workers} workers for fuzzy dedup)"
    )


if __name__ == "__main__":
    main()
