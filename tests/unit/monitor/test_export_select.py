"""`monitor export`'s choice of conversations: feedback, corrections, and the judge's scores from a replay."""

from __future__ import annotations

import json

import pytest

from tunewright.core.errors import UserError
from tunewright.monitor.export import judge_scores, select


def _row(i: int, feedback: list[dict] | None = None) -> dict:
    return {
        "id": f"r{i}",
        "window_id": "capture-1",
        "model": "support",
        "version": "exports/support/v1",
        "status": 200,
        "request": {"messages": [{"role": "user", "content": f"question {i}"}]},
        "response": {"choices": [{"content": f"answer {i}", "finish_reason": "stop"}]},
        "feedback": feedback or [],
    }


def test_judge_scores_choose_answers_nobody_scored_down():
    rows = [_row(0), _row(1), _row(2, [{"score": 0.0}]), _row(3, [{"score": 1.0}]), _row(4)]
    judged = {"r0": 5.0, "r1": 2.0, "r2": 5.0, "r4": 4.0}
    records, why = select(rows, "chat", 1.0, judged, 4.0)
    assert [r["id"] for r in records] == ["r0", "r3", "r4"]  # r2: a user scored it down, whatever the judge says
    assert why == {"judge score >= 4": 2, "feedback score >= 1": 1}
    assert records[0]["meta"]["judge_score"] == 5.0 and "judge_score" not in records[1]["meta"]
    assert [r["id"] for r in select(rows, "chat", 1.0)[0]] == ["r3"]  # without a replay: feedback only


def _replay(ws, run_id: str, window: str, rows: list[dict]) -> None:
    run = ws / "runs" / run_id
    run.mkdir(parents=True)
    manifest = {"run_id": run_id, "stage": "eval", "status": "complete", "results": {"replay": {"window": window}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_judge_scores_come_from_a_replay_of_the_same_window(tmp_path):
    rows = [
        {"task": "replay", "id": "r0", "role": "baseline", "scores": {"judge_score": 5.0}},
        {"task": "replay", "id": "r0", "role": "model", "scores": {"judge_score": 1.0}},
        {"task": "replay", "id": "r1", "role": "baseline", "scores": {"similar": 1.0}},
    ]
    _replay(tmp_path, "eval-1", "capture-1", rows)
    assert judge_scores(tmp_path, "eval-1", "capture-1") == {"r0": 5.0}  # production's answers only
    with pytest.raises(UserError, match="not a replay of window capture-2"):
        judge_scores(tmp_path, "eval-1", "capture-2")
    _replay(tmp_path, "eval-2", "capture-1", rows[2:])
    with pytest.raises(UserError, match="has no judge_score"):
        judge_scores(tmp_path, "eval-2", "capture-1")
