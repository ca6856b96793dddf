"""`tunewright eval`: run the tasks on a model (and a baseline), score, gate, report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewright.core.io import write_jsonl, write_text
from tunewright.core.model_source import ModelSource, resolve_model
from tunewright.core.progress import progress_bar
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve
from tunewright.engine.offline import answer_chats
from tunewright.evaluate.config import EvalConfig
from tunewright.evaluate.gates import GateResult, check_gates
from tunewright.evaluate.metrics import score_task
from tunewright.evaluate.report import render_report
from tunewright.evaluate.suite import Task, load_tasks


@dataclass
class ModelResult:
    source: ModelSource
    metrics: dict[str, dict[str, float]]
    answers: dict[str, list[str]]
    gates: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.source.label,
            "passed": self.passed,
            "metrics": self.metrics,
            "gates": [g.__dict__ for g in self.gates],
        }


def evaluate_model(source: ModelSource, tasks: list[Task], cfg: EvalConfig) -> ModelResult:
    """Generate answers for every task item and score them."""
    metrics, answers = {}, {}
    prompts = [p for task in tasks for p in task.prompts]
    g = cfg.generation
    with progress_bar(f"evaluating {source.label}", total=len(prompts)) as advance:
        outs = iter(answer_chats(source, prompts, g.max_new_tokens, g.batch_size, advance=advance))
    for task in tasks:
        answers[task.name] = [next(outs).text for _ in task.prompts]
        metrics[task.name], _ = score_task(answers[task.name], task.references, cfg.format_regex, cfg.fields)
    result = ModelResult(source, metrics, answers)
    result.gates = check_gates(cfg.gates, metrics)
    return result


def run_eval(
    cfg: EvalConfig, workspace: Path, model_ref: str, baseline_ref: str | None, run: Run
) -> tuple[ModelResult, ModelResult | None]:
    """Evaluate the model (and the baseline), write generations and the report."""
    target = resolve_model(workspace, model_ref)
    baseline = resolve_model(workspace, baseline_ref, base_of=target) if baseline_ref else None
    tasks = load_tasks(cfg, workspace)
    report_path = run.output_file(resolve(workspace, cfg.report))
    for task in tasks:
        run.add_input(task.path)
    for source in filter(None, (target, baseline)):
        for path in source.files():
            run.add_input(path)
        if source.run_id:
            run.add_parent(source.run_id)
    results = [evaluate_model(target, tasks, cfg)]
    if baseline is not None:
        results.append(evaluate_model(baseline, tasks, cfg))
    for role, res in zip(("model", "baseline"), results, strict=False):
        rows = [
            {"task": t.name, "id": i, "role": role, "model": res.source.label, "answer": a, "reference": r}
            for t in tasks
            for i, a, r in zip(t.ids, res.answers[t.name], t.references, strict=True)
        ]
        write_jsonl(run.dir / f"generations-{role}.jsonl", rows)
    tuned, base = results[0], (results[1] if len(results) > 1 else None)
    report = render_report(cfg, tasks, tuned, base, run.run_id)
    write_text(run.dir / "eval-report.md", report)
    write_text(report_path, report)
    run.results.update(
        model=tuned.summary(),
        model_run=target.run_id,
        baseline=base.summary() if base else None,
        passed=tuned.passed,
    )
    return tuned, base
