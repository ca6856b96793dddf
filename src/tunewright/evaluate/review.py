"""Blind human review of an eval run: shuffled, unlabelled A/B pairs out; judgments back in.

`export_review` pairs the model's and the baseline's answers to the same item, shuffles the
pairs and flips a seeded coin for which answer is A, and writes `review.csv` and
`review.jsonl` for subject-matter experts; the key (which side is the model) stays in the
export's run directory, never in the files reviewers get. `import_review` reads the
filled-in file back (a `preferred` column: A, B, tie, or blank for not judged), turns each
judgment into a model win (1), tie (0.5) or loss (0), adds the win rate with a bootstrap
interval to the eval report, and writes every non-tie judgment as a PreferencePair (the
preferred answer chosen, the other rejected) for a later DPO stage.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from tunewright.core.errors import DataError, UserError
from tunewright.core.io import iter_csv, iter_jsonl, write_json, write_jsonl, write_text
from tunewright.core.manifest import list_manifests, load_manifest, newest
from tunewright.core.runs import Run, find_run
from tunewright.evaluate.report import render_html, render_markdown
from tunewright.evaluate.stats import confidence_interval, mean_metric, resample_counts

COLUMNS = ["pair_id", "task", "question", "reference", "answer_a", "answer_b", "preferred", "comment"]
VERDICTS = {"a": "A", "b": "B", "tie": "tie", "": ""}


def eval_run(workspace: Path, ref: str) -> tuple[Path, dict[str, Any]]:
    run_dir = find_run(workspace, ref)
    manifest = load_manifest(run_dir)
    if manifest["stage"] != "eval":
        raise UserError(f"{ref} is run {manifest['run_id']} of stage '{manifest['stage']}'; expected an eval run")
    return run_dir, manifest


def _pairs(run_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rows = [line.value for line in iter_jsonl(run_dir / "results.jsonl")]
    base = {(r["task"], r["id"]): r for r in rows if r["role"] == "baseline"}
    pairs = [(r, base[(r["task"], r["id"])]) for r in rows if r["role"] == "model" and (r["task"], r["id"]) in base]
    pairs = [(m, b) for m, b in pairs if m["answer"] is not None and b["answer"] is not None]
    if not pairs:
        raise UserError(f"eval run {run_dir.name} has no answers of both a model and a baseline to review")
    return pairs


def blind_pairs(run_dir: Path, manifest: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The eval run's answer pairs in a seeded shuffle, each with a seeded coin for which answer is A: the rows a
    reviewer sees (no model names) and the key (pair id -> task, item id, which side is the model)."""
    rng = random.Random(int(manifest["config"].get("seed", 0)))
    pairs = _pairs(run_dir)
    rng.shuffle(pairs)
    rows, key = [], {}
    for n, (m, b) in enumerate(pairs, start=1):
        pair_id = f"p{n:04d}"
        model_first = rng.random() < 0.5
        a, bb = (m, b) if model_first else (b, m)
        rows.append(
            {
                "pair_id": pair_id,
                "task": m["task"],
                "question": m["question"],
                "reference": m["reference"] or "",
                "answer_a": a["answer"],
                "answer_b": bb["answer"],
                "preferred": "",
                "comment": "",
            }
        )
        key[pair_id] = {"task": m["task"], "id": m["id"], "model_is": "A" if model_first else "B"}
    return rows, key


def export_review(workspace: Path, ref: str, out_dir: Path, run: Run) -> int:
    """Write the blind review files for an eval run; returns the number of pairs."""
    run_dir, manifest = eval_run(workspace, ref)
    rows, key = blind_pairs(run_dir, manifest)
    run.add_parent(manifest["run_id"])
    run.add_input(run_dir / "results.jsonl")
    csv_path, jsonl_path = run.output_file(out_dir / "review.csv"), run.output_file(out_dir / "review.jsonl")
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    write_jsonl(jsonl_path, rows)
    write_json(run.dir / "key.json", {"eval_run": manifest["run_id"], "pairs": key})
    run.results.update(eval_run=manifest["run_id"], pairs=len(rows), files=[run.rel(out_dir / "review.csv")])
    return len(rows)


def _key(workspace: Path, eval_run: str) -> dict[str, Any]:
    exports = [m for m in list_manifests(workspace) if m["stage"] == "review" and m["results"].get("pairs")]
    exports = [m for m in exports if m["results"].get("eval_run") == eval_run]
    if not exports:
        raise UserError(f"no blind review was exported for {eval_run}: run `tunewright eval export-review {eval_run}`")
    chosen = newest(exports)
    assert chosen is not None
    return json.loads((workspace / "runs" / chosen["run_id"] / "key.json").read_text(encoding="utf-8"))


def _judgments(path: Path) -> list[tuple[int, dict[str, Any]]]:
    lines = iter_csv(path) if path.suffix.lower() == ".csv" else iter_jsonl(path)
    out = []
    for line in lines:
        if line.error:
            raise DataError(f"{line.path}:{line.lineno}: {line.error}")
        if not isinstance(line.value, dict) or "pair_id" not in line.value or "preferred" not in line.value:
            raise DataError(f"{path}:{line.lineno}: a judgment needs pair_id and preferred")
        out.append((line.lineno, line.value))
    return out


def import_review(workspace: Path, ref: str, judged: Path, preferences_out: Path, run: Run) -> dict[str, Any]:
    """Read reviewers' judgments back: win rate into the report, preference pairs out."""
    run_dir, manifest = eval_run(workspace, ref)
    eval_id = manifest["run_id"]
    key = _key(workspace, eval_id)["pairs"]
    results = {
        (r["task"], r["id"], r["role"]): r for r in (line.value for line in iter_jsonl(run_dir / "results.jsonl"))
    }
    wins, prefs, ties, skipped, seen = [], [], 0, 0, set()
    for lineno, row in _judgments(judged):
        pair_id, raw = str(row["pair_id"]), str(row["preferred"] or "").strip().lower()
        if pair_id not in key:
            raise DataError(f"{judged}:{lineno}: pair_id {pair_id!r} is not in the exported review of {eval_id}")
        if pair_id in seen:
            raise DataError(f"{judged}:{lineno}: pair_id {pair_id!r} is judged twice")
        seen.add(pair_id)
        if raw not in VERDICTS:
            raise DataError(f"{judged}:{lineno}: preferred must be A, B, tie or blank, found {row['preferred']!r}")
        verdict = VERDICTS[raw]
        if not verdict:
            skipped += 1
            continue
        k = key[pair_id]
        model, base = results[(k["task"], k["id"], "model")], results[(k["task"], k["id"], "baseline")]
        if verdict == "tie":
            ties += 1
            wins.append(0.5)
            continue
        model_won = verdict == k["model_is"]
        wins.append(1.0 if model_won else 0.0)
        chosen, rejected = (model, base) if model_won else (base, model)
        prefs.append(
            {
                "prompt": model.get("prompt") or [{"role": "user", "content": model["question"]}],
                "chosen": [{"role": "assistant", "content": chosen["answer"]}],
                "rejected": [{"role": "assistant", "content": rejected["answer"]}],
                "id": f"{eval_id}:{k['task']}:{k['id']}",
                "source": f"review:{eval_id}",
                "meta": {"task": k["task"], "item": k["id"], "preferred": "model" if model_won else "baseline"},
            }
        )
    if not wins:
        raise DataError(f"{judged}: no pair is judged (preferred is blank everywhere)")
    summary = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    metric = mean_metric("win_rate", wins)
    ci = confidence_interval(
        metric, resample_counts(len(wins), summary["bootstrap"], summary["seed"]), summary["confidence"]
    )
    review = {
        "judged": len(wins),
        "ties": ties,
        "skipped": skipped,
        "win_rate": {"value": ci.value, "low": ci.low, "high": ci.high},
    }
    run.add_input(judged)
    return publish_review(workspace, manifest, review, prefs, preferences_out, run)


def publish_review(
    workspace: Path,
    manifest: dict[str, Any],
    review: dict[str, Any],
    prefs: list[dict[str, Any]],
    preferences_out: Path,
    run: Run,
) -> dict[str, Any]:
    """Put a review's results into the eval run's report (`review` in its eval.json, re-rendered) and write its
    preference pairs, as outputs of the review `run`; returns the review summary."""
    eval_id = manifest["run_id"]
    run_dir = workspace / "runs" / eval_id
    summary = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    summary["review"] = {**review, "review_run": run.run_id}
    run.add_parent(eval_id)
    report = Path(manifest["config"].get("report", "reports/eval-report.md"))
    report = report if report.is_absolute() else workspace / report
    for path, text in ((report, render_markdown(summary)), (report.with_suffix(".html"), render_html(summary))):
        write_text(run.output_file(path), text)
    write_json(run.dir / "eval.json", summary)
    write_jsonl(run.output_file(preferences_out), prefs)
    run.results.update(eval_run=eval_id, review=summary["review"], preferences=run.rel(preferences_out))
    return summary["review"]
