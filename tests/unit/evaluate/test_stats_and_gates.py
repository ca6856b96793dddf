import math

import numpy as np
import pytest

from tunewright.core.errors import UserError
from tunewright.evaluate.config import EvalConfig, GateConfig
from tunewright.evaluate.gates import (
    FAIL,
    GO,
    INCONCLUSIVE,
    NO_GO,
    PASS,
    GateOutcome,
    decide_gate,
    validate_gates,
    verdict,
)
from tunewright.evaluate.scorers import nll_metrics
from tunewright.evaluate.stats import (
    Interval,
    confidence_interval,
    mean_metric,
    paired_difference,
    resample_counts,
)


def test_bootstrap_of_a_proportion_matches_the_normal_approximation():
    values = [1.0] * 200 + [0.0] * 200
    ci = confidence_interval(mean_metric("m", values), resample_counts(400, 4000, seed=1), 0.95)
    half = 1.96 * math.sqrt(0.25 / 400)  # 0.049
    assert ci.value == 0.5
    assert ci.low == pytest.approx(0.5 - half, abs=0.01) and ci.high == pytest.approx(0.5 + half, abs=0.01)


def test_paired_difference_cancels_item_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, 300)
    base = mean_metric("m", list(difficulty))
    model = mean_metric("m", list(difficulty + 0.05))  # every item exactly 0.05 better
    counts = resample_counts(300, 1000, seed=0)
    d = paired_difference(model, base, counts, 0.95)
    assert d.value == pytest.approx(0.05) and d.low == pytest.approx(0.05) and d.high == pytest.approx(0.05)
    unpaired = confidence_interval(model, counts, 0.95)
    assert unpaired.high - unpaired.low > 0.05  # the same data unpaired cannot see the difference


def test_intervals_are_reproducible_and_skip_items_without_a_value():
    m = mean_metric("m", [1.0, None, 0.0, 1.0, None])
    a = confidence_interval(m, resample_counts(5, 500, seed=3), 0.9)
    b = confidence_interval(m, resample_counts(5, 500, seed=3), 0.9)
    assert a == b and a.value == pytest.approx(2 / 3)
    empty = confidence_interval(mean_metric("m", [None, None]), resample_counts(2, 200, 0), 0.95)
    assert math.isnan(empty.value) and math.isnan(empty.low)


def test_ratio_metrics_resample_the_corpus_value():
    ppl = {m.name: m for m in nll_metrics([(10.0, 5), (2.0, 5), (6.0, 5)])}["perplexity"]
    ci = confidence_interval(ppl, resample_counts(3, 2000, 0), 0.95)
    assert ci.value == pytest.approx(math.exp(18 / 15))
    assert math.exp(2 / 5) <= ci.low <= ci.value <= ci.high <= math.exp(10 / 5)


def gate(**kw):
    return GateConfig(metric="t.m", **kw)


@pytest.mark.parametrize(
    ("rule", "ci", "expected"),
    [
        ({"threshold": 0.9}, Interval(0.95, 0.91, 0.99), PASS),
        ({"threshold": 0.9}, Interval(0.85, 0.80, 0.89), FAIL),
        ({"threshold": 0.9}, Interval(0.92, 0.85, 0.97), INCONCLUSIVE),
        ({"threshold": 20, "op": "<="}, Interval(5, 4, 6), PASS),
        ({"threshold": 20, "op": "<="}, Interval(25, 21, 30), FAIL),
        ({"threshold": 0.5, "op": ">"}, Interval(0.5, 0.5, 0.5), FAIL),
    ],
)
def test_absolute_gates(rule, ci, expected):
    assert decide_gate(gate(**rule), ci, None, None, True).status == expected


@pytest.mark.parametrize(
    ("rule", "diff", "higher", "expected"),
    [
        ({"max_drop": 0.02}, Interval(-0.005, -0.015, 0.01), True, PASS),
        ({"max_drop": 0.02}, Interval(-0.06, -0.09, -0.03), True, FAIL),
        ({"max_drop": 0.02}, Interval(-0.02, -0.05, 0.01), True, INCONCLUSIVE),
        ({"min_gain": 0.05}, Interval(0.2, 0.1, 0.3), True, PASS),
        ({"min_gain": 0.05}, Interval(0.03, 0.01, 0.04), True, FAIL),
        # lower is better: a negative difference is an improvement
        ({"min_gain": 1.0}, Interval(-3.0, -3.5, -2.5), False, PASS),
        ({"max_drop": 0.1}, Interval(0.5, 0.3, 0.7), False, FAIL),
    ],
)
def test_relative_gates_use_the_paired_difference(rule, diff, higher, expected):
    assert decide_gate(gate(**rule), Interval(0.5, 0.4, 0.6), 0.5, diff, higher).status == expected


def test_a_metric_without_any_value_is_inconclusive():
    nan = Interval(float("nan"), float("nan"), float("nan"))
    assert decide_gate(gate(threshold=0.5), nan, None, None, True).status == INCONCLUSIVE


def outcome(status, tier):
    return GateOutcome("t.m", ">= 0.5", tier, status, {}, None, None)


def test_verdict_from_tiers():
    assert verdict([outcome(PASS, "critical"), outcome(FAIL, "advisory")]) == GO
    assert verdict([outcome(PASS, "critical"), outcome(FAIL, "supporting")]) == INCONCLUSIVE
    assert verdict([outcome(INCONCLUSIVE, "critical")]) == INCONCLUSIVE
    assert verdict([outcome(FAIL, "critical"), outcome(INCONCLUSIVE, "critical")]) == NO_GO
    assert verdict([]) == GO


def test_gates_are_validated_against_the_declared_metrics():
    declared = {"support": ["rouge2", "token_f1", "format_rate"]}
    validate_gates([GateConfig(metric="support.rouge2", threshold=0.1)], declared, False)
    with pytest.raises(UserError, match=r"computes no metric 'bleu'.*rouge2, token_f1, format_rate"):
        validate_gates([GateConfig(metric="support.bleu", threshold=0.1)], declared, False)
    with pytest.raises(UserError, match="no task 'golden'"):
        validate_gates([GateConfig(metric="golden.format_rate", threshold=0.1)], declared, False)
    with pytest.raises(UserError, match="pass --baseline"):
        validate_gates([GateConfig(metric="support.token_f1", max_drop=0.02)], declared, False)


def test_gate_config_needs_exactly_one_rule():
    with pytest.raises(ValueError, match="exactly one of threshold, max_drop, min_gain"):
        GateConfig(metric="t.m")
    with pytest.raises(ValueError, match="exactly one"):
        GateConfig(metric="t.m", threshold=1, max_drop=0.1)
    with pytest.raises(ValueError):
        EvalConfig(tasks=[{"name": "t", "data": "x"}, {"name": "t", "data": "y"}])
    with pytest.raises(ValueError, match="needs `task`"):
        EvalConfig(tasks=[{"name": "t", "kind": "lm_eval"}])
