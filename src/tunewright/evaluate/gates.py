"""Gates: written down before results exist, checked against the metrics the suite will produce,
then decided from confidence intervals.

Before any generation, `validate_gates` checks every gate names a metric that one of the
configured scorers will compute, and that a gate relative to the baseline has one. After
scoring, each gate is PASS when its whole confidence interval satisfies it, FAIL when the
whole interval violates it, and INCONCLUSIVE when the interval straddles the line (the
items cannot tell). A relative gate is decided on the paired bootstrap interval of
model − baseline, turned so that positive always means better (for nll, perplexity and
over-refusal lower is better). The verdict: NO-GO when a critical gate fails;
INCONCLUSIVE when a critical gate is inconclusive or a supporting gate fails; GO otherwise.
Advisory gates are reported and never change the verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tunewright.core.errors import UserError
from tunewright.evaluate.config import GateConfig
from tunewright.evaluate.stats import Interval

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
GO, NO_GO = "GO", "NO-GO"


def validate_gates(gates: list[GateConfig], declared: dict[str, list[str]], has_baseline: bool) -> None:
    """Every gate's metric exists and every relative gate has a baseline; else exit 2, before any generation."""
    for gate in gates:
        task, _, name = gate.metric.partition(".")
        if task not in declared:
            raise UserError(f"gate {gate.metric}: no task {task!r}; tasks: {', '.join(declared)}")
        if name not in declared[task]:
            raise UserError(
                f"gate {gate.metric}: task {task!r} computes no metric {name!r}; "
                f"it computes: {', '.join(declared[task]) or 'nothing'}"
            )
        if gate.relative and not has_baseline:
            rule = "max_drop" if gate.max_drop is not None else "min_gain"
            raise UserError(f"gate {gate.metric} ({rule}) compares with the baseline: pass --baseline")


def rule_text(gate: GateConfig) -> str:
    if gate.threshold is not None:
        return f"{gate.op} {gate.threshold:g}"
    if gate.max_drop is not None:
        return f"drops at most {gate.max_drop:g} vs baseline"
    return f"beats baseline by at least {gate.min_gain:g}"


@dataclass
class GateOutcome:
    metric: str
    rule: str
    tier: str
    status: str
    model: dict[str, float]
    baseline: float | None
    difference: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _absolute(gate: GateConfig, ci: Interval) -> str:
    t = gate.threshold
    assert t is not None
    if gate.op in (">=", ">"):
        ok = ci.low >= t if gate.op == ">=" else ci.low > t
        bad = ci.high < t if gate.op == ">=" else ci.high <= t
    else:
        ok = ci.high <= t if gate.op == "<=" else ci.high < t
        bad = ci.low > t if gate.op == "<=" else ci.low >= t
    return PASS if ok else FAIL if bad else INCONCLUSIVE


def _relative(gate: GateConfig, diff: Interval, higher_is_better: bool) -> str:
    low, high = (diff.low, diff.high) if higher_is_better else (-diff.high, -diff.low)
    bound = -gate.max_drop if gate.max_drop is not None else gate.min_gain
    assert bound is not None
    return PASS if low >= bound else FAIL if high < bound else INCONCLUSIVE


def decide_gate(
    gate: GateConfig, model: Interval, baseline: float | None, diff: Interval | None, higher_is_better: bool
) -> GateOutcome:
    """One gate's outcome from the model's interval (absolute) or the paired difference (relative)."""
    if any(math.isnan(x) for x in (model.value, model.low, model.high)):
        status = INCONCLUSIVE
    elif gate.relative:
        assert diff is not None
        status = INCONCLUSIVE if math.isnan(diff.low) else _relative(gate, diff, higher_is_better)
    else:
        status = _absolute(gate, model)
    return GateOutcome(
        gate.metric,
        rule_text(gate),
        gate.tier,
        status,
        asdict(model),
        baseline,
        asdict(diff) if diff is not None else None,
    )


def verdict(outcomes: list[GateOutcome]) -> str:
    """GO / NO-GO / INCONCLUSIVE from the gates' outcomes and tiers."""
    critical = [o.status for o in outcomes if o.tier == "critical"]
    supporting = [o.status for o in outcomes if o.tier == "supporting"]
    if FAIL in critical:
        return NO_GO
    if INCONCLUSIVE in critical or FAIL in supporting:
        return INCONCLUSIVE
    return GO
