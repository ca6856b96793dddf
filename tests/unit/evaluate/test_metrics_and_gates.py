import pytest

from tunewright.core.errors import UserError
from tunewright.evaluate.config import EvalConfig, GateConfig
from tunewright.evaluate.gates import check_gates
from tunewright.evaluate.metrics import score_task, token_f1

REF = "First step: check the monitor.\nThen: rerun the load.\nEscalate: x is governed, so yes; notify."
FIELDS = {"first_step": r"First step: ([^\n]+?)\.?(?:\n|$)", "escalate": r"so (yes|no)"}
FORMAT = r"^First step: [^\n]+\nThen: [^\n]+\nEscalate: [^\n]+ so (yes|no); [^\n]+$"


def test_token_f1():
    assert token_f1("a b c", "a b c") == 1.0
    assert token_f1("a b", "c d") == 0.0
    assert token_f1("a b c d", "a b") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", "") == 1.0
    assert token_f1("", "a") == 0.0


def test_score_task_format_and_fields():
    answers = [
        REF,
        "First step: check the monitor.\nThen: wait.\nEscalate: x is not governed, so no; team.",
        "I think you should check the monitor.",
    ]
    means, rows = score_task(answers, [REF] * 3, FORMAT, FIELDS)
    assert [r["format_rate"] for r in rows] == [1.0, 1.0, 0.0]
    assert [r["field_first_step"] for r in rows] == [1.0, 1.0, 0.0]
    assert [r["field_escalate"] for r in rows] == [1.0, 0.0, 0.0]
    assert [r["field_accuracy"] for r in rows] == [1.0, 0.5, 0.0]
    assert means["field_accuracy"] == pytest.approx(0.5)
    assert means["exact_match"] == pytest.approx(1 / 3)


def test_gates_pass_fail_and_unknown_metric():
    metrics = {"support": {"format_rate": 0.9, "field_accuracy": 0.5}}
    gates = [
        GateConfig(metric="support.format_rate", op=">=", threshold=0.9),
        GateConfig(metric="support.field_accuracy", op=">", threshold=0.5),
    ]
    assert [g.passed for g in check_gates(gates, metrics)] == [True, False]
    with pytest.raises(UserError, match=r"'support\.bleu' was not computed; available: support\.format_rate"):
        check_gates([GateConfig(metric="support.bleu", threshold=1)], metrics)


def test_field_patterns_need_one_group():
    with pytest.raises(ValueError, match="exactly one capture group"):
        EvalConfig(tasks=[{"name": "t", "data": "x"}], fields={"f": "no group"})
