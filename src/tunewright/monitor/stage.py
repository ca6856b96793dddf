"""`tunewright monitor`: read the capture store, judge each served version's windows, write the reports.

Per served name and version, over windows of `window_hours` since `since_hours` ago: the figures
of `windows.py`; input drift of the latest window's prompts against the training prompts of the
version's lineage and against the previous window (`drift.py`); output drift of its answers
(length, refusals) against the version's eval answers. Each check against `thresholds` that fails
is a breach; `monitor check` exits 1 on any. The report, the Prometheus alerting rules and
`monitor.json` are the outputs of a `monitor` run whose parents are the capture windows read.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tunewright.core import capture_store as store
from tunewright.core.embeddings import embed
from tunewright.core.errors import UserError
from tunewright.core.io import write_json, write_text
from tunewright.core.manifest import MANIFEST
from tunewright.core.runs import Run, start_run
from tunewright.core.workspace import resolve
from tunewright.monitor.alerts import alert_rules
from tunewright.monitor.checks import drift_checks, stat_checks
from tunewright.monitor.config import MonitorConfig
from tunewright.monitor.drift import DriftTest, input_drift
from tunewright.monitor.reference import Reference, reference_for
from tunewright.monitor.report import render_html, render_markdown
from tunewright.monitor.windows import answers, is_refusal, prompt_text, window_stats


def _sample(texts: list[str], cap: int, seed: int = 0) -> list[str]:
    return texts if len(texts) <= cap else random.Random(seed).sample(texts, cap)


def _drift(window: list[str], reference: list[str], cfg: MonitorConfig) -> dict[str, Any]:
    """An input-drift result as the report holds it (or why there is none)."""
    d = cfg.drift
    if len(window) < d.min_prompts or len(reference) < d.min_prompts:
        return {"tested": False, "why": f"too few prompts (window {len(window)}, reference {len(reference)})"}
    window, reference = _sample(window, d.max_prompts), _sample(reference, d.max_prompts, 1)
    vectors = embed(window + reference)
    result: DriftTest = input_drift(vectors[: len(window)], vectors[len(window) :], window, d.permutations)
    return {
        "tested": True,
        "mmd2": result.mmd2,
        "p_value": result.p_value,
        "drifted": result.drifted(d.alpha),
        "n_window": result.n_window,
        "n_reference": result.n_reference,
        "moved": [
            {"window_share": c.window_share, "reference_share": c.reference_share, "examples": c.examples}
            for c in result.clusters[:3]
            if c.moved > 0
        ],
    }


def _output_drift(rows: list[dict[str, Any]], ref: Reference) -> dict[str, Any]:
    """Answer length and refusal rate of a window against the version's eval answers."""
    texts = [a for r in rows if r["status"] == 200 for a in answers(r)]
    if not texts or not ref.eval_answers:
        return {"tested": False, "why": "no eval answers in the version's lineage" if texts else "no answers"}
    length, base_length = float(np.mean([len(t) for t in texts])), float(np.mean([len(t) for t in ref.eval_answers]))
    refusals = float(np.mean([is_refusal(t) for t in texts]))
    base_refusals = float(np.mean([is_refusal(t) for t in ref.eval_answers]))
    return {
        "tested": True,
        "eval_run": ref.eval_run,
        "answer_chars_mean": length,
        "eval_answer_chars_mean": base_length,
        "answer_length_change": abs(length / base_length - 1) if base_length else None,
        "refusal_rate": refusals,
        "eval_refusal_rate": base_refusals,
        "refusal_rate_increase": refusals - base_refusals,
    }


def _breaches(version: dict[str, Any], cfg: MonitorConfig) -> list[dict[str, Any]]:
    """The threshold checks a served version fails (its windows, its latest window's drift)."""
    t = cfg.thresholds
    out = []

    def breach(check: str, window: str, value: float, threshold: float | bool, rule: str) -> None:
        label = f"{version['model']} ({version['version']})"
        message = f"{label}, window {window}: {check} {value:.3g} {rule} {threshold}"
        out.append(
            {
                "check": check,
                "model": version["model"],
                "version": version["version"],
                "window": window,
                "value": value,
                "threshold": threshold,
                "message": message,
            }
        )

    for w in version["windows"]:
        for c in stat_checks(w["stats"], t):
            breach(c.check, w["start_iso"], c.value, c.threshold, c.rule)
    latest = version["windows"][-1]["start_iso"]
    drift = version["input_drift"]["training"]
    if t.input_drift and drift.get("tested") and drift["drifted"]:
        breach("input_drift_p_value", latest, drift["p_value"], cfg.drift.alpha, "below alpha")
    out_drift = version["output_drift"]
    if out_drift.get("tested"):
        for c in drift_checks(out_drift["answer_length_change"], out_drift["refusal_rate_increase"], t):
            breach(c.check, latest, c.value, c.threshold, c.rule)
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def analyse(workspace: Path, cfg: MonitorConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The monitor summary of captured rows: per served version, its windows, drift and breaches."""
    width = cfg.window_hours * 3600
    groups: dict[tuple[str, str | None], dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["model"], r["version"])][(r["ts"] // width) * width].append(r)
    versions = []
    for (model, version), by_window in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        starts = sorted(by_window)
        windows = [{"start": s, "start_iso": _iso(s), "stats": window_stats(by_window[s])} for s in starts]
        ref = reference_for(workspace, version)
        latest = [p for r in by_window[starts[-1]] if (p := prompt_text(r))]
        previous = [p for r in by_window[starts[-2]] if (p := prompt_text(r))] if len(starts) > 1 else []
        item = {
            "model": model,
            "version": version,
            "train_run": ref.train_run,
            "train_path": ref.train_path,
            "windows": windows,
            "input_drift": {
                "training": _drift(latest, ref.prompts, cfg)
                if ref.prompts
                else {"tested": False, "why": "no training split in the version's lineage"},
                "previous_window": _drift(latest, previous, cfg)
                if previous
                else {"tested": False, "why": "no previous window"},
            },
            "output_drift": _output_drift(by_window[starts[-1]], ref),
        }
        item["breaches"] = _breaches(item, cfg)
        versions.append(item)
    return {
        "generated": _iso(time.time()),
        "requests": len(rows),
        "window_hours": cfg.window_hours,
        "versions": versions,
        "breaches": [b for v in versions for b in v["breaches"]],
    }


def monitor(workspace: Path, cfg: MonitorConfig, command: list[str]) -> tuple[Run, dict[str, Any]]:
    """Analyse the capture store and write the report, alert rules and `monitor.json` as a `monitor` run."""
    path = resolve(workspace, cfg.store)
    if not path.is_file():
        raise UserError(f"store: no capture store at {path}; serve with capture.enabled=true first")
    now = time.time()
    conn = store.connect(path, readonly=True)
    try:
        rows = list(store.read_requests(conn, since=now - cfg.since_hours * 3600))
    finally:
        conn.close()
    if not rows:
        raise UserError(f"no captured requests in the last {cfg.since_hours:g} hours in {path}")
    with start_run(workspace, "monitor", command, cfg.model_dump()) as run:
        for window in sorted({r["window_id"] for r in rows}):
            if (workspace / "runs" / window / MANIFEST).is_file():
                run.add_parent(window)
        summary = analyse(workspace, cfg, rows)
        report = resolve(workspace, cfg.report)
        write_text(run.output_file(report), render_markdown(summary))
        write_text(run.output_file(report.with_suffix(".html")), render_html(summary))
        write_text(run.output_file(resolve(workspace, cfg.alert_rules)), alert_rules(cfg.thresholds))
        write_json(run.dir / "monitor.json", summary)
        run.results.update(
            requests=summary["requests"], versions=len(summary["versions"]), breaches=len(summary["breaches"])
        )
    return run, summary
