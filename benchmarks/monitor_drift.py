"""Input-drift power and false alarms of `tunewright monitor`, on real MiniLM embeddings.

Reference: the embedded domain's prompts (what the quickstart's model is trained on). Windows of
`--window` prompts are drawn from them with replacement, a share of each replaced by questions of
a topic the training data lacks (`domain.off_topic_questions`: leave, expenses, equipment). Each
window is tested against a `--reference`-prompt sample with the monitor's MMD permutation test at
`--alpha`; the share flagged is the power (share > 0) or the false-alarm rate (share 0).

    python benchmarks/monitor_drift.py --trials 20
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from tunewright.core.embeddings import embed
from tunewright.demo import domain
from tunewright.monitor.drift import mmd_test

sys.path.insert(0, str(Path(__file__).parent))
from child_run import cpu_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--reference", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--permutations", type=int, default=500)
    ap.add_argument("--shares", default="0,0.1,0.2,0.3")
    args = ap.parse_args()
    trained = sorted({p for _, _, p in domain.all_cases()} | {p for _, p, _ in domain.incident_cases()})
    novel = sorted(set(domain.off_topic_questions(random.Random(0), 2000)))
    pools = embed(trained), embed(novel)
    print(f"CPU {cpu_name()}; {len(trained)} trained prompts, {len(novel)} off-topic")
    for share in (float(s) for s in args.shares.split(",")):
        flagged, seconds = 0, []
        for seed in range(args.trials):
            rng = np.random.default_rng(seed + int(share * 1000))
            k = round(args.window * share)
            reference = pools[0][rng.integers(len(pools[0]), size=args.reference)]
            window = np.concatenate(
                [
                    pools[0][rng.integers(len(pools[0]), size=args.window - k)],
                    pools[1][rng.integers(len(pools[1]), size=k)],
                ]
            )
            start = time.perf_counter()
            flagged += mmd_test(window, reference, args.permutations, seed)[1] < args.alpha
            seconds.append(time.perf_counter() - start)
        print(
            f"off-topic share {share:.0%}: flagged {flagged}/{args.trials} ({flagged / args.trials:.0%}) at alpha "
            f"{args.alpha}; {args.window} vs {args.reference} prompts, {args.permutations} permutations, "
            f"median {np.median(seconds):.2f} s a test"
        )


if __name__ == "__main__":
    main()
