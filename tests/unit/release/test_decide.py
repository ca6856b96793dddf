"""Promotion decisions from the registry alone: a version whose parity failed is refused by name."""

from tunewright.core.runs import start_run
from tunewright.release.promote import decide


def test_a_version_that_failed_parity_is_refused_with_that_reason(tmp_path):
    ws = tmp_path
    with start_run(ws, "train", ["train"], {}) as train:
        pass
    with start_run(ws, "eval", ["eval"], {}) as ev:
        ev.add_parent(train.run_id)
        ev.results.update(verdict="GO", model_run=train.run_id, baseline="base", gates=[])
    (ws / "exports/m/v1").mkdir(parents=True)
    with start_run(ws, "export", ["export"], {}) as ex:
        ex.add_parent(train.run_id)
        ex.results.update(
            name="m", version="v1", source_run=train.run_id, format="merged", export_dir="exports/m/v1",
            parity_passed=False,
        )  # fmt: skip
    decision = decide(ws, "m@v1", "production")
    assert decision.reasons == ["v1 did not pass the export parity check"]
    assert decision.eval_run == ev.run_id  # the eval itself was found and is GO


def _export(ws, train, version):
    (ws / f"exports/m/v{version}").mkdir(parents=True)
    with start_run(ws, "export", ["export"], {}) as ex:
        ex.add_parent(train.run_id)
        ex.results.update(
            name="m", version=f"v{version}", source_run=train.run_id, format="merged",
            export_dir=f"exports/m/v{version}", parity_passed=True,
        )  # fmt: skip


def _eval(ws, model, baseline, verdict, replay=None):
    with start_run(ws, "eval", ["eval"], {}) as ev:
        ev.results.update(
            verdict=verdict, model_path=str((ws / model).resolve()), baseline=baseline,
            baseline_path=str((ws / baseline).resolve()) if baseline != "base" else None,
            gates=[{"metric": "replay.over_refusal_rate", "status": "FAIL"}] if verdict != "GO" else [],
        )  # fmt: skip
        if replay:
            ev.results["replay"] = {"window": "capture-1", "production": baseline, "items": 10}
    return ev.run_id


def test_promotion_can_require_a_go_on_a_replay_which_does_not_stand_in_for_the_suite(tmp_path):
    from tunewright.release.promote import promote

    ws = tmp_path
    with start_run(ws, "train", ["train"], {}) as train:
        pass
    _export(ws, train, 1)
    _eval(ws, "exports/m/v1", "base", "GO")
    assert decide(ws, "m@v1", "production", require_replay=True).reasons == [
        "nothing serves m@production yet, so there is no traffic to replay"
    ]
    promote(ws, decide(ws, "m@v1", "production"), "first release")

    with start_run(ws, "train", ["train"], {}) as train2:
        pass
    _export(ws, train2, 2)
    suite = _eval(ws, "exports/m/v2", "exports/m/v1", "GO")
    assert decide(ws, "m@v2", "production").reasons == []
    assert (
        "has no replay of production traffic against v1"
        in decide(ws, "m@v2", "production", require_replay=True).reasons[0]
    )

    failed = _eval(ws, "exports/m/v2", "exports/m/v1", "NO-GO", replay=True)
    decision = decide(ws, "m@v2", "production", require_replay=True)
    assert decision.eval_run == suite  # the suite's verdict is still the suite's, not the newer replay's
    assert decision.reasons == [f"the newest replay of v2 ({failed}) is NO-GO: gate(s) replay.over_refusal_rate (FAIL)"]
    _eval(ws, "exports/m/v2", "exports/m/v1", "GO", replay=True)
    assert decide(ws, "m@v2", "production", require_replay=True).reasons == []
