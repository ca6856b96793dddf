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
