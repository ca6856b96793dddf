"""The eval report: model vs baseline per metric, the gates, and answers side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunewright.evaluate.config import EvalConfig
from tunewright.evaluate.suite import Task

if TYPE_CHECKING:
    from tunewright.evaluate.stage import ModelResult

SAMPLES = 4


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or "(empty)"


def render_report(
    cfg: EvalConfig, tasks: list[Task], model: ModelResult, baseline: ModelResult | None, run_id: str
) -> str:
    """Markdown report for one eval run."""
    verdict = "PASS" if model.passed else "FAIL"
    lines = [
        "# Eval report",
        "",
        f"Run `{run_id}`. Model **{model.source.label}**"
        + (f" against baseline **{baseline.source.label}**" if baseline else "")
        + f". Gates: **{verdict}**.",
        "",
        "## Metrics",
        "",
        "| task | metric | " + ("baseline | " if baseline else "") + "model | " + ("delta |" if baseline else ""),
        "|---|---|" + ("---|" if baseline else "") + "---|" + ("---|" if baseline else ""),
    ]
    for task in tasks:
        for name, value in model.metrics[task.name].items():
            row = f"| {task.name} ({len(task.ids)}) | {name} | "
            if baseline:
                b = baseline.metrics[task.name][name]
                row += f"{b:.3f} | {value:.3f} | {value - b:+.3f} |"
            else:
                row += f"{value:.3f} |"
            lines.append(row)
    lines += ["", "## Gates (from the config, fixed before these results)", ""]
    lines += [
        "| gate | model | result |" + (" baseline | result |" if baseline else ""),
        "|---|---|---|" + ("---|---|" if baseline else ""),
    ]
    base_gates = baseline.gates if baseline else [None] * len(model.gates)
    for g, b in zip(model.gates, base_gates, strict=True):
        row = f"| {g.metric} {g.op} {g.threshold} | {g.value:.3f} | {'pass' if g.passed else 'FAIL'} |"
        if b is not None:
            row += f" {b.value:.3f} | {'pass' if b.passed else 'FAIL'} |"
        lines.append(row)
    if not cfg.gates:
        lines.append("| (no gates configured) | | |")
    lines += ["", "## Sample answers", ""]
    for task in tasks[:1]:
        for i in range(min(SAMPLES, len(task.ids))):
            lines += [f"**{task.name} / {task.ids[i]}** — {_cell(task.prompts[i][-1]['content'])}", ""]
            lines += ["| | answer |", "|---|---|", f"| reference | {_cell(task.references[i])} |"]
            if baseline:
                lines.append(f"| baseline | {_cell(baseline.answers[task.name][i])} |")
            lines += [f"| model | {_cell(model.answers[task.name][i])} |", ""]
    return "\n".join(lines)
