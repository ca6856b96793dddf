"""Reviewers' judgments of an eval run's blind pairs: the log they are kept in, what they add up to, and the
preference pairs they make.

The log is `reviews/<eval run>/judgments.jsonl` in the workspace, one JSON object per
judgment, appended (and flushed to disk) as each is given, so a review can stop at any time
and resume; a reviewer who judges a pair again replaces their earlier judgment (the last line
wins). A line cut short by a crash is skipped when read, with a warning.

A judgment prefers A or B, calls them a tie, or says both are bad, and may carry a comment and
a corrected answer. Against the key (which side is the model) it scores the model 1 (won),
0 (lost) or 0.5 (tie, both bad). Win rates come per reviewer, with a bootstrap interval over
the pairs they judged, and overall, each pair counted once at its reviewers' mean score, the
interval resampling pairs. Agreement between reviewers is taken on the pairs two of them both
judged: the share of equal verdicts and Cohen's kappa, per two reviewers and their mean.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.io import iter_jsonl
from tunewright.core.manifest import load_manifest
from tunewright.core.runs import Run
from tunewright.evaluate.review import blind_pairs, eval_run, publish_review
from tunewright.evaluate.stats import confidence_interval, mean_metric, resample_counts

log = logging.getLogger("tunewright.review")
VERDICTS = ("A", "B", "tie", "both_bad")


def judgments_path(workspace: Path, eval_id: str) -> Path:
    return workspace / "reviews" / eval_id / "judgments.jsonl"


class JudgmentLog:
    """The append-only judgment log of one eval run's review."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, judgment: dict[str, Any]) -> None:
        """Append one judgment and flush it to disk before returning."""
        line = json.dumps(judgment, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def latest(self) -> list[dict[str, Any]]:
        """Each reviewer's last judgment of each pair, in the order first given."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        if not self.path.is_file():
            return []
        with self._lock, open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                try:
                    j = json.loads(line)
                except ValueError:
                    log.warning("%s:%d: not a complete judgment (cut short?); skipped", self.path, lineno)
                    continue
                found[(j["reviewer"], j["pair_id"])] = j
        return list(found.values())


@dataclass
class ReviewSession:
    """One eval run's blind pairs, their key and the judgment log."""

    eval_id: str
    rows: list[dict[str, Any]]
    key: dict[str, dict[str, Any]]
    log: JudgmentLog


def open_session(workspace: Path, ref: str) -> ReviewSession:
    """The review of the eval run `ref` (an id, a path or latest:eval)."""
    run_dir, manifest = eval_run(workspace, ref)
    rows, key = blind_pairs(run_dir, manifest)
    return ReviewSession(manifest["run_id"], rows, key, JudgmentLog(judgments_path(workspace, manifest["run_id"])))


def model_score(verdict: str, model_is: str) -> float:
    """The model's score in one judgment: 1 won, 0 lost, 0.5 tie or both bad."""
    if verdict in ("tie", "both_bad"):
        return 0.5
    return 1.0 if verdict == model_is else 0.0


def _outcome(verdict: str, model_is: str) -> str:
    """A verdict in terms of the models (what two reviewers agree on): model, baseline, tie or both_bad."""
    if verdict in ("tie", "both_bad"):
        return verdict
    return "model" if verdict == model_is else "baseline"


def _interval(values: list[float], bootstrap: int, seed: int, confidence: float) -> dict[str, float]:
    ci = confidence_interval(mean_metric("win_rate", values), resample_counts(len(values), bootstrap, seed), confidence)
    return {"value": ci.value, "low": ci.low, "high": ci.high}


def _kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two reviewers' outcomes on the same pairs (None when chance agreement is total)."""
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p, q = Counter(first), Counter(second)
    expected = sum(p[k] * q[k] for k in p) / (n * n)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


def summarize(
    judgments: list[dict[str, Any]], key: dict[str, dict[str, Any]], bootstrap: int, seed: int, confidence: float
) -> dict[str, Any]:
    """Win rates per reviewer and overall with intervals, verdict counts and inter-reviewer agreement."""
    by_reviewer: dict[str, dict[str, str]] = defaultdict(dict)
    for j in judgments:
        by_reviewer[j["reviewer"]][j["pair_id"]] = _outcome(j["verdict"], key[j["pair_id"]]["model_is"])
    score = {"model": 1.0, "baseline": 0.0, "tie": 0.5, "both_bad": 0.5}
    reviewers = {}
    for name, outcomes in sorted(by_reviewer.items()):
        counts = Counter(outcomes.values())
        reviewers[name] = {
            "judged": len(outcomes),
            "ties": counts["tie"],
            "both_bad": counts["both_bad"],
            "win_rate": _interval([score[o] for o in outcomes.values()], bootstrap, seed, confidence),
        }
    per_pair: dict[str, list[float]] = defaultdict(list)
    for outcomes in by_reviewer.values():
        for pair_id, outcome in outcomes.items():
            per_pair[pair_id].append(score[outcome])
    overall = [sum(v) / len(v) for v in per_pair.values()]
    counts = Counter(o for outcomes in by_reviewer.values() for o in outcomes.values())
    agreement = []
    for a, b in combinations(sorted(by_reviewer), 2):
        common = sorted(set(by_reviewer[a]) & set(by_reviewer[b]))
        if not common:
            continue
        first, second = [by_reviewer[a][p] for p in common], [by_reviewer[b][p] for p in common]
        agreement.append(
            {
                "reviewers": [a, b],
                "pairs": len(common),
                "agreement": sum(x == y for x, y in zip(first, second, strict=True)) / len(common),
                "kappa": _kappa(first, second),
            }
        )
    kappas = [g["kappa"] for g in agreement if g["kappa"] is not None]
    return {
        "judged": len(overall),
        "judgments": sum(len(o) for o in by_reviewer.values()),
        "ties": counts["tie"],
        "both_bad": counts["both_bad"],
        "skipped": len(key) - len(overall),
        "win_rate": _interval(overall, bootstrap, seed, confidence),
        "reviewers": reviewers,
        "agreement": {
            "pairs": agreement,
            "mean_agreement": sum(g["agreement"] for g in agreement) / len(agreement) if agreement else None,
            "mean_kappa": sum(kappas) / len(kappas) if kappas else None,
        },
    }


def preference_pairs(
    judgments: list[dict[str, Any]],
    key: dict[str, dict[str, Any]],
    results: dict[tuple[str, str, str], dict[str, Any]],
    eval_id: str,
) -> list[dict[str, Any]]:
    """PreferencePair rows: per pair, the answer most reviewers preferred over the other (none on a draw); and
    per corrected answer, the correction over each answer its reviewer did not prefer."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for j in judgments:
        votes[j["pair_id"]][_outcome(j["verdict"], key[j["pair_id"]]["model_is"])] += 1
    out = []

    def pair(k: dict[str, Any], chosen: str, rejected: str, how: str, extra: dict[str, Any]) -> dict[str, Any]:
        model = results[(k["task"], k["id"], "model")]
        return {
            "prompt": model.get("prompt") or [{"role": "user", "content": model["question"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "id": f"{eval_id}:{k['task']}:{k['id']}:{how}",
            "source": f"review:{eval_id}",
            "meta": {"task": k["task"], "item": k["id"], **extra},
        }

    for pair_id, counted in sorted(votes.items()):
        k = key[pair_id]
        answers = {side: results[(k["task"], k["id"], side)]["answer"] for side in ("model", "baseline")}
        model_votes, baseline_votes = counted["model"], counted["baseline"]
        if model_votes != baseline_votes:
            won = "model" if model_votes > baseline_votes else "baseline"
            lost = "baseline" if won == "model" else "model"
            votes_for = {"preferred": won, "votes": dict(counted)}
            out.append(pair(k, answers[won], answers[lost], "preferred", votes_for))
    for j in judgments:
        correction = (j.get("correction") or "").strip()
        if not correction:
            continue
        k = key[j["pair_id"]]
        outcome = _outcome(j["verdict"], k["model_is"])
        rejected = [s for s in ("model", "baseline") if s != outcome]
        for side in rejected:
            answer = results[(k["task"], k["id"], side)]["answer"]
            if answer.strip() != correction:
                extra = {"corrected_by": j["reviewer"], "over": side, "comment": j.get("comment") or ""}
                out.append(pair(k, correction, answer, f"correction:{j['reviewer']}:{side}", extra))
    return out


def export_judgments(workspace: Path, ref: str, preferences_out: Path, run: Run) -> dict[str, Any]:
    """`tunewright review export`: the judgments of the eval run `ref` into its report (win rates, agreement)
    and as preference pairs at `preferences_out`, as the review `run`."""
    session = open_session(workspace, ref)
    judgments = session.log.latest()
    if not judgments:
        raise UserError(
            f"nobody has judged {session.eval_id} yet ({session.log.path} is empty): "
            f"tunewright review serve {session.eval_id}"
        )
    run_dir = workspace / "runs" / session.eval_id
    summary = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    review = summarize(judgments, session.key, summary["bootstrap"], summary["seed"], summary["confidence"])
    rows = (line.value for line in iter_jsonl(run_dir / "results.jsonl"))
    results = {(r["task"], r["id"], r["role"]): r for r in rows}
    prefs = preference_pairs(judgments, session.key, results, session.eval_id)
    run.add_input(session.log.path)
    return publish_review(workspace, load_manifest(run_dir), review, prefs, preferences_out, run)
