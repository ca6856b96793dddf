"""Gates: thresholds written down in the config before results exist, checked after."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from tunewright.core.errors import UserError
from tunewright.evaluate.config import GateConfig

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass
class GateResult:
    metric: str
    op: str
    threshold: float
    value: float
    passed: bool


def check_gates(gates: list[GateConfig], metrics: dict[str, dict[str, float]]) -> list[GateResult]:
    """Evaluate each gate on `metrics[task][metric]`; a gate on an unknown metric is an error."""
    results = []
    for gate in gates:
        task, _, name = gate.metric.partition(".")
        if task not in metrics or name not in metrics[task]:
            known = ", ".join(f"{t}.{m}" for t, ms in metrics.items() for m in ms)
            raise UserError(f"gate metric {gate.metric!r} was not computed; available: {known}")
        value = metrics[task][name]
        results.append(GateResult(gate.metric, gate.op, gate.threshold, value, OPS[gate.op](value, gate.threshold)))
    return results
