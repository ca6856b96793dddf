"""`tunewright eval`: validate the gates, generate and score every task for the model (and the
baseline), decide the gates from bootstrap intervals, and write the per-item results and reports.

Order matters for trust: the config is hashed and every gate is checked against the
metrics the scorers will produce before a single token is generated; the targets are
checked (an endpoint must answer and serve the model); only then does generation start.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.io import write_json, write_jsonl, write_text
from tunewright.core.manifest import MANIFEST
from tunewright.core.model_source import resolve_model
from tunewright.core.progress import progress_bar
from tunewright.core.runs import Run, lineage, start_run
from tunewright.core.workspace import resolve
from tunewright.evaluate.config import EvalConfig, JudgeScorer
from tunewright.evaluate.gates import GateOutcome, decide_gate, validate_gates, verdict
from tunewright.evaluate.items import Task, load_task
from tunewright.evaluate.judge import Judge
from tunewright.evaluate.report import render_html, render_markdown
from tunewright.evaluate.results import ModelResults, TaskResult
from tunewright.evaluate.scorers import metric_names, nll_metrics, preference_metrics, score_answers
from tunewright.evaluate.stats import Interval, Metric, confidence_interval, paired_difference, resample_counts
from tunewright.evaluate.targets import EndpointTarget, LocalTarget, Target

WORST = 10


@dataclass
class TargetSpec:
    """What --model / --baseline named: a model reference, or an endpoint and the model it serves."""

    ref: str | None = None
    endpoint: str | None = None
    endpoint_model: str | None = None


def config_hash(cfg: EvalConfig) -> str:
    """sha256 of the resolved config (canonical JSON): what the gates were, fixed before the results."""
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def make_target(workspace: Path, spec: TargetSpec, cfg: EvalConfig, base_of: Target | None = None) -> Target:
    """The target a spec names; `base` resolves against the model under test (`base_of`)."""
    if spec.endpoint:
        if not spec.endpoint_model:
            raise UserError(f"--endpoint {spec.endpoint} needs the model name it serves (--endpoint-model)")
        return EndpointTarget(spec.endpoint, spec.endpoint_model, cfg.endpoint)
    if spec.ref is None:
        raise UserError("name a model to evaluate")
    base = base_of.source if isinstance(base_of, LocalTarget) else None
    if spec.ref == "base" and base is None:
        raise UserError("--baseline base means the base of a local --model; name the baseline model instead")
    source = resolve_model(workspace, spec.ref, base_of=base).in_dtype(
        cfg.generation.dtype, cfg.generation.device, "generation.device"
    )
    return LocalTarget(source, cfg.generation.batch_size)


def declared_metrics(cfg: EvalConfig, tasks: dict[str, Task], workspace: Path) -> dict[str, list[str]]:
    """Per task, the metrics it will report (known before generation)."""
    out = {}
    for t in cfg.tasks:
        if t.kind == "lm_eval":
            from tunewright.evaluate.harness import harness_metrics

            out[t.name] = harness_metrics(t, workspace)
        else:
            out[t.name] = metric_names(t, tasks[t.name].items)
    return out


def _preflight(cfg: EvalConfig, targets: list[Target], has_baseline: bool) -> None:
    for t in cfg.tasks:
        for s in t.scorers:
            if s.type in ("nll", "preference") and any(isinstance(x, EndpointTarget) for x in targets):
                raise UserError(
                    f"task {t.name}: the {s.type} scorer needs a local model (an endpoint has no log-probs of ours)"
                )
            if isinstance(s, JudgeScorer) and s.mode == "pairwise" and not has_baseline:
                raise UserError(f"task {t.name}: a pairwise judge compares with the baseline: pass --baseline")
    for gate in cfg.gates:
        if gate.relative and gate.metric.endswith(".judge_win_rate"):
            raise UserError(f"gate {gate.metric}: a win rate is already model vs baseline; gate it with a threshold")


def _similarity():
    from tunewright.core.embeddings import Embedder

    embedder = Embedder()

    def cosine(a: list[str], b: list[str]) -> list[float]:
        ea, eb = embedder(a), embedder(b)
        return [float(x) for x in (ea * eb).sum(1)]

    return cosine


def _needs_similarity(cfg: EvalConfig, tasks: dict[str, Task]) -> bool:
    def similar_assert(assertions: list) -> bool:
        return any(a.type.removeprefix("not-") == "similar" for a in assertions)

    for t in cfg.tasks:
        if any(s.type == "similar" for s in t.scorers) or similar_assert(t.assertions):
            return True
        if t.name in tasks and any(similar_assert(it.assertions) for it in tasks[t.name].items):
            return True
    return False


def _generate(target: Target, cfg: EvalConfig, tasks: dict[str, Task]) -> dict[str, list[str]]:
    """Answers for every generate task that needs them, all submitted to the target at once."""
    scored_only = ("nll", "preference")  # log-probs of given answers: nothing to generate
    wanted = [
        t for t in tasks.values() if t.config.assertions or any(s.type not in scored_only for s in t.config.scorers)
    ]
    wanted += [t for t in tasks.values() if t not in wanted and any(it.assertions for it in t.items)]
    chats = [it.prompt for t in wanted for it in t.items]
    if not chats:
        return {}
    tools = [it.tools for t in wanted for it in t.items]
    formats = [it.response_format for t in wanted for it in t.items]
    with progress_bar(f"generating with {target.label}", total=len(chats)) as advance:
        answers = iter(target.generate(chats, cfg.generation.max_new_tokens, advance, tools, formats))
    return {t.name: [next(answers) for _ in t.items] for t in wanted}


def _score(
    target: Target, role: str, cfg: EvalConfig, tasks: dict[str, Task], judges: dict[str, Judge], similarity
) -> ModelResults:
    """Generate and score every generate task of `target`."""
    generated = _generate(target, cfg, tasks)
    out = ModelResults(target, role)
    for name, task in tasks.items():
        items = task.items
        answers = generated.get(name, [""] * len(items))
        metrics = score_answers(task.config, items, answers, similarity)
        if any(s.type == "nll" for s in task.config.scorers):
            chats = [it.prompt for it in items]
            with progress_bar(f"reference log-probs, {name}", total=len(items)) as advance:
                results = target.reference_nll(chats, [it.reference or "" for it in items], advance)
            metrics += nll_metrics(results)
        if any(s.type == "preference" for s in task.config.scorers):
            chats = [it.prompt for it in items]
            with progress_bar(f"preference pairs, {name}", total=2 * len(items)) as advance:
                chosen = target.reference_nll(chats, [it.reference or "" for it in items], advance)
                rejected = target.reference_nll(chats, [it.rejected or "" for it in items], advance)
            metrics += preference_metrics(chosen, rejected)
        judge = judges.get(name)
        if judge is not None and judge.cfg.mode == "score":
            with progress_bar(f"judging {name} ({role})", total=len(items)) as advance:
                metrics += judge.metrics(judge.score(items, answers, advance))
        out.tasks[name] = TaskResult(
            name,
            [it.id for it in items],
            [it.question for it in items],
            [it.prompt for it in items],
            [it.reference for it in items],
            generated.get(name),
            {m.name: m for m in metrics},
        )
    return out


def _lineage(workspace: Path, target: Target) -> list[dict[str, Any]]:
    """run -> curation run -> raw sources, as the chain the report prints."""
    if target.run_id is None:
        return []
    chain = []
    for depth, m in lineage(workspace, target.run_id):
        raw = [i["path"] for i in m.get("inputs", []) if i["path"].startswith("data/raw/")]
        chain.append({"depth": depth, "run": m["run_id"], "stage": m["stage"], "raw_sources": raw})
    return chain


def _interval_dict(metric: Metric, counts, confidence: float) -> dict[str, float]:
    ci = confidence_interval(metric, counts, confidence)
    return {"value": ci.value, "low": ci.low, "high": ci.high}


def summarise(
    cfg: EvalConfig, model: ModelResults, baseline: ModelResults | None
) -> tuple[list[dict[str, Any]], list[GateOutcome]]:
    """Per-task metric tables with intervals (and paired differences), and the gate outcomes."""
    tables, intervals = [], {}
    for index, (task, result) in enumerate(model.tasks.items()):
        metrics, n = result.metrics, len(result.ids)
        counts = resample_counts(n, cfg.bootstrap, cfg.seed + index)
        rows = []
        for name, metric in metrics.items():
            ci = confidence_interval(metric, counts, cfg.confidence)
            row: dict[str, Any] = {
                "name": name,
                "higher_is_better": metric.higher_is_better,
                "model": {"value": ci.value, "low": ci.low, "high": ci.high},
                "baseline": None,
                "difference": None,
            }
            theirs = baseline.tasks.get(task) if baseline else None
            other = theirs.metrics.get(name) if theirs else None
            if other is not None:
                row["baseline"] = _interval_dict(other, counts, cfg.confidence)
                d = paired_difference(metric, other, counts, cfg.confidence)
                row["difference"] = {"value": d.value, "low": d.low, "high": d.high}
            intervals[f"{task}.{name}"] = (ci, row, metric.higher_is_better)
            rows.append(row)
        tables.append({"name": task, "items": n, "metrics": rows})
    outcomes = []
    for gate in cfg.gates:
        ci, row, higher = intervals[gate.metric]
        diff = row["difference"]
        outcomes.append(
            decide_gate(
                gate,
                ci,
                row["baseline"]["value"] if row["baseline"] else None,
                Interval(**diff) if diff else None,
                higher,
            )
        )
    return tables, outcomes


def _primary(cfg: EvalConfig, task: str, metrics: dict[str, Metric]) -> str | None:
    gated = [g.metric.partition(".")[2] for g in cfg.gates if g.metric.startswith(f"{task}.")]
    for name in [*gated, *metrics]:
        if name in metrics and any(v is not None for v in metrics[name].per_item):
            return name
    return None


def worst_regressions(cfg: EvalConfig, model: ModelResults, baseline: ModelResults) -> list[dict[str, Any]]:
    """Items where the model did worst against the baseline, on each task's primary metric."""
    rows = []
    for task, result in model.tasks.items():
        theirs = baseline.tasks.get(task)
        name = _primary(cfg, task, result.metrics)
        if name is None or theirs is None or name not in theirs.metrics:
            continue
        m, b = result.metrics[name], theirs.metrics[name]
        sign = 1 if m.higher_is_better else -1
        for i, (mv, bv) in enumerate(zip(m.per_item, b.per_item, strict=True)):
            if mv is None or bv is None or sign * (mv - bv) >= 0:
                continue
            rows.append(
                {
                    "task": task,
                    "id": result.ids[i],
                    "metric": name,
                    "model_score": mv,
                    "baseline_score": bv,
                    "delta": sign * (mv - bv),
                    "question": result.questions[i],
                    "reference": result.references[i],
                    "model_answer": result.answer(i),
                    "baseline_answer": theirs.answer(i),
                }
            )
    return sorted(rows, key=lambda r: r["delta"])[:WORST]


def run_eval(cfg: EvalConfig, workspace: Path, model: TargetSpec, baseline: TargetSpec | None, run: Run) -> dict:
    """Evaluate the model (and the baseline); write results, reports and the run summary; return the summary."""
    chash = config_hash(cfg)
    target = make_target(workspace, model, cfg)
    base = make_target(workspace, baseline, cfg, base_of=target) if baseline else None
    targets = [t for t in (target, base) if t is not None]
    tasks = {t.name: load_task(t, resolve(workspace, t.data)) for t in cfg.tasks if t.kind == "generate"}
    declared = declared_metrics(cfg, tasks, workspace)
    validate_gates(cfg.gates, declared, base is not None)
    _preflight(cfg, targets, base is not None)
    for t in targets:
        if isinstance(t, EndpointTarget):
            t.check()
    report_md = run.output_file(resolve(workspace, cfg.report))
    report_html = run.output_file(resolve(workspace, cfg.report).with_suffix(".html"))
    for task in tasks.values():
        run.add_input(task.path)
    for t in targets:
        if isinstance(t, LocalTarget):
            for path in t.source.files():
                run.add_input(path)
            if t.run_id:
                run.add_parent(t.run_id)
    judges = {
        t.name: Judge(s, cfg.endpoint, workspace / "cache" / "judge")
        for t in cfg.tasks
        for s in t.scorers
        if isinstance(s, JudgeScorer)
    }
    similarity = _similarity() if _needs_similarity(cfg, tasks) else None
    results = []
    try:
        for t, role in zip(targets, ("model", "baseline"), strict=False):
            scored = _score(t, role, cfg, tasks, judges, similarity)
            for tc in cfg.tasks:
                if tc.kind == "lm_eval":
                    from tunewright.evaluate.harness import run_harness_task

                    scored.tasks[tc.name] = run_harness_task(tc, workspace, t, cfg)
            if isinstance(t, LocalTarget):
                t.close()
            results.append(scored)
        tuned, other = results[0], (results[1] if len(results) > 1 else None)
        for name, judge in judges.items():
            if judge.cfg.mode == "pairwise" and other is not None:
                task = tasks[name]
                with progress_bar(f"pairwise judging {name}", total=len(task.items)) as advance:
                    wins = judge.compare(task.items, tuned.tasks[name].answers, other.tasks[name].answers, advance)
                tuned.tasks[name].metrics.update({m.name: m for m in judge.metrics(wins)})
    finally:
        for judge in judges.values():
            judge.close()
        for t in targets:
            if isinstance(t, EndpointTarget):
                t.close()
    tables, outcomes = summarise(cfg, tuned, other)
    summary: dict[str, Any] = {
        "run_id": run.run_id,
        "config_hash": chash,
        "verdict": verdict(outcomes),
        "confidence": cfg.confidence,
        "bootstrap": cfg.bootstrap,
        "seed": cfg.seed,
        "models": {s.role: {**s.target.describe(), "lineage": _lineage(workspace, s.target)} for s in results},
        "tasks": tables,
        "gates": [o.to_dict() for o in outcomes],
        "worst": worst_regressions(cfg, tuned, other) if other else [],
        "judges": {n: {"replies": j.replies, "junk": j.junk} for n, j in judges.items()},
    }
    write_jsonl(run.dir / "results.jsonl", [row for s in results for row in s.rows()])
    write_json(run.dir / "eval.json", summary)
    markdown, html = render_markdown(summary), render_html(summary)
    for path, text in ((run.dir / "eval-report.md", markdown), (report_md, markdown)):
        write_text(path, text)
    for path in (run.dir / "eval-report.html", report_html):
        write_text(path, html)
    run.results.update(
        verdict=summary["verdict"],
        config_hash=chash,
        model=tuned.target.label,
        model_run=tuned.target.run_id,
        model_path=tuned.target.identity,
        baseline=other.target.label if other else None,
        baseline_path=other.target.identity if other else None,
        gates=summary["gates"],
        passed=summary["verdict"] == "GO",
    )
    return summary


def evaluate(
    workspace: Path,
    cfg: EvalConfig,
    model: TargetSpec,
    baseline: TargetSpec | None,
    command: list[str],
    replay: dict[str, Any] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """`tunewright eval` as a library call: the evaluation, recorded as a run; the run and its summary.
    The verdict is in the summary; a NO-GO is not an exception here (the CLI makes it exit 1). A replay
    (`evaluate/replay.py`) is recorded in the results, with its capture window as the run's parent."""
    with start_run(workspace, "eval", command, cfg.model_dump()) as run:
        if replay is not None:
            if (workspace / "runs" / replay["window"] / MANIFEST).is_file():
                run.add_parent(replay["window"])
            run.results["replay"] = replay
        summary = run_eval(cfg, workspace, model, baseline, run)
    return run, summary
