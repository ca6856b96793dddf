"""Eval results as objects: what one model answered and scored on one task, and on every task.

The generate tasks, the lm-evaluation-harness tasks and the pairwise judge each build or
extend a `TaskResult`; the summary, the worst regressions and `results.jsonl` read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunewright.evaluate.stats import Metric
from tunewright.evaluate.targets import Target


@dataclass
class TaskResult:
    """One model on one task: each item's id, question, prompt, reference and answer, and the metrics."""

    name: str
    ids: list[str]
    questions: list[str]
    prompts: list[list[dict[str, str]]]
    references: list[str | None]
    answers: list[str] | None  # None: nothing was generated (log-prob scorers only)
    metrics: dict[str, Metric] = field(default_factory=dict)

    def answer(self, i: int) -> str:
        return self.answers[i] if self.answers else ""


@dataclass
class ModelResults:
    """One model's results on every task, in the role it was evaluated in (`model` or `baseline`)."""

    target: Target
    role: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """results.jsonl: one row per (model, task, item) with the answer and every score."""
        rows = []
        for task in self.tasks.values():
            for i, item_id in enumerate(task.ids):
                rows.append(
                    {
                        "task": task.name,
                        "id": item_id,
                        "role": self.role,
                        "model": self.target.label,
                        "question": task.questions[i],
                        "prompt": task.prompts[i],
                        "reference": task.references[i],
                        "answer": task.answers[i] if task.answers else None,
                        "scores": {name: m.per_item[i] for name, m in task.metrics.items() if m.per_item},
                    }
                )
        return rows
