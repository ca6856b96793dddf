"""The canary's routing and decisions on rows in a real capture store and a real registry."""

from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path

import pytest

from tunewright.cli.serve import canary_policy
from tunewright.core import capture_store as store
from tunewright.core.registry import open_registry
from tunewright.core.thresholds import Thresholds
from tunewright.monitor.checks import canary_breaches
from tunewright.serve.canary import Canary, CanaryPlan
from tunewright.serve.config import CanaryConfig, CaptureConfig, ServeConfig

JSON_FORMAT = {"type": "json_object"}


def _row(n: int, arm: str, answer: str, fmt: dict | None = None, status: int = 200, finish: str = "stop") -> dict:
    request = {"messages": [{"role": "user", "content": f"q{n}"}], "canary": {"arm": arm}}
    if fmt is not None:
        request["response_format"] = fmt
    return {
        **dict.fromkeys(store.COLUMNS),
        "id": f"{arm}-{n}",
        "window_id": "capture-1",
        "ts": time.time() + n * 1e-3,
        "route": "chat.completions",
        "model": "helper-v2" if arm == "candidate" else "helper",
        "status": status,
        "stream": 0,
        "total_s": 0.1,
        "request": request,
        "response": {"choices": [{"role": "assistant", "content": answer, "finish_reason": finish}]},
        "pii": {},
    }


def _canary(tmp_path: Path, **settings) -> Canary:
    cfg = ServeConfig(
        capture=CaptureConfig(enabled=True),
        canary=CanaryConfig(candidate="helper@staging", min_requests=4, **settings),
    )
    plan = CanaryPlan(tmp_path, "helper", "staging", 2, 1, "helper-v2")
    canary = Canary(cfg.canary, plan, canary_policy(cfg, plan), "helper", tmp_path / "capture.sqlite", "capture-1")
    canary.started = 0.0
    return canary


def _store(tmp_path: Path, rows: list[dict]) -> None:
    with closing(store.connect(tmp_path / "capture.sqlite")) as conn:
        store.insert_requests(conn, rows)


def test_routing_sends_the_weight_of_one_name_to_the_candidate(tmp_path):
    canary = _canary(tmp_path, weight=0.3)
    arms = [canary.route("helper", "helper")[1]["arm"] for _ in range(4000)]
    assert abs(arms.count("candidate") / len(arms) - 0.3) < 0.03
    adapter, decision = canary.route("helper", "helper")
    assert adapter == ("helper-v2" if decision["arm"] == "candidate" else "helper")
    assert decision["candidate"] == "helper@v2" and decision["state"] == "observing"
    assert canary.route("other", "other") == ("other", None)  # other names are not routed


def test_breaches_use_the_thresholds_and_compare_answers_with_production(tmp_path):
    def breaches(ours: list[dict], theirs: list[dict]) -> list:
        return canary_breaches(ours, theirs, Thresholds())

    production = [_row(i, "production", "Rerun the load, then check counts.") for i in range(6)]
    clean = [_row(i, "candidate", "Rerun the load, then check the counts.") for i in range(6)]
    assert breaches(clean, production) == []
    garbage = [_row(i, "candidate", '{"table": "x' * 20, JSON_FORMAT, finish="length") for i in range(6)]
    found = {c.check: c for c in breaches([*garbage, *clean], production)}
    assert found["json_validity"].value == 0.0 and found["json_validity"].rule == "below"
    assert "answer_length_change" not in found  # lengths compare free-text answers only
    rambling = [_row(i, "candidate", "Rerun the load. " * 20) for i in range(6)]
    assert {c.check for c in breaches(rambling, production)} == {"answer_length_change"}
    short_json = [_row(i, "candidate", "{}", JSON_FORMAT) for i in range(6)]
    assert breaches([*short_json, clean[0]], production) == []  # more JSON on one arm is not a length change
    refusing = [_row(i, "candidate", "I can't help with that.") for i in range(6)]
    assert {c.check for c in breaches(refusing, production)} == {"refusal_rate_increase"}
    failing = [_row(i, "candidate", "", status=500, finish="error") for i in range(6)]
    assert "error_rate" in {c.check for c in breaches(failing, production)}
    lenient = _canary(tmp_path, thresholds=Thresholds(json_validity=None, answer_length_change=None))
    assert lenient.policy.breaches(garbage, production) == []  # a check set to null is off
    assert _canary(tmp_path).policy.breaches(refusing, production) == ["refusal_rate_increase 1 above 0.1"]


def test_no_decision_before_the_minimum_sample_then_a_breach_rolls_the_alias_back(tmp_path):
    with open_registry(tmp_path) as registry:
        registry.move_alias("helper", "production", 1, "me", "release", "promote")
        registry.move_alias("helper", "staging", 2, "me", "candidate", "promote")
    canary = _canary(tmp_path)
    assert canary.check() == "observing"  # no store yet
    bad = [_row(i, "candidate", "", status=500, finish="error") for i in range(3)]
    _store(tmp_path, [*bad, *(_row(i, "production", "fine") for i in range(3))])
    assert canary.check() == "observing"  # 3 of the 4 needed
    _store(tmp_path, [_row(3, "candidate", "", status=500, finish="error")])
    assert canary.check() == "rolled_back"
    assert canary.weight == 0.0 and canary.route("helper", "helper")[1]["arm"] == "production"
    with open_registry(tmp_path) as registry:
        move = registry.alias_moves("helper", "staging")[-1]
    # staging held nothing before v2, so it goes to the version production serves
    assert (move["from_version"], move["to_version"], move["kind"]) == (2, 1, "canary-rollback")
    assert move["reason"] == canary.decision and "error_rate 1 above 0.05" in move["reason"]


def test_a_clean_sample_is_left_in_place_and_still_watched(tmp_path):
    canary = _canary(tmp_path)
    _store(tmp_path, [_row(i, arm, "Check the counts.") for i in range(4) for arm in ("candidate", "production")])
    assert canary.check() == "passed" and canary.weight == 0.1
    with closing(store.connect(tmp_path / "capture.sqlite")) as conn:
        feedback = {"score": 0.0}
        for i in range(4):
            store.add_feedback(conn, f"candidate-{i}", feedback, {})
    assert canary.check() == "passed"  # feedback_score is off by default
    canary.cfg.thresholds.feedback_score = 0.5
    with open_registry(tmp_path) as registry:
        registry.move_alias("helper", "staging", 2, "me", "candidate", "promote")
    assert canary.check() == "rolled_back"  # a later breach still rolls it back
    assert "feedback_score_mean 0 below 0.5" in json.dumps(canary.decision)


def test_canary_config_is_checked():
    with pytest.raises(ValueError, match="expected NAME@ALIAS"):
        CanaryConfig(candidate="helper@v2")
    with pytest.raises(ValueError, match="expected NAME@ALIAS"):
        CanaryConfig(candidate="helper")
    with pytest.raises(ValueError, match=r"capture\.enabled=true"):
        ServeConfig(canary=CanaryConfig(candidate="helper@staging"))
    with pytest.raises(ValueError, match="tunewright engine"):
        ServeConfig(engine="vllm", capture=CaptureConfig(enabled=True), canary={"candidate": "helper@staging"})
