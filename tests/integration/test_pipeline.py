"""`tunewright pipeline`: stages run in order, skipped while their config, code and inputs are unchanged; a changed
setting reruns its stage and the ones after it, an edited raw file reruns curation; --force and --from."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tunewright.cli.main import main


def write_pipeline(ws: Path, steps: int = 2) -> None:
    stages = [
        {"stage": "curate"},
        {"stage": "train", "overrides": [f"training.max_steps={steps}", "training.eval_every=2"]},
    ]
    (ws / "configs" / "pipeline.yaml").write_text(yaml.safe_dump({"stages": stages}))


def runs(ws: Path, stage: str) -> set[str]:
    return {p.name for p in (ws / "runs").glob(f"{stage}-*")}


def last_pipeline(ws: Path) -> list[dict]:
    newest = max(
        (ws / "runs").glob("pipeline-*"), key=lambda p: json.loads((p / "manifest.json").read_text())["started_at"]
    )
    return json.loads((newest / "manifest.json").read_text())["results"]["stages"]


def test_stages_are_skipped_until_their_config_or_inputs_change(model_workspace, capfd):
    ws = model_workspace
    write_pipeline(ws)
    assert main(["pipeline", "-w", str(ws)]) == 0
    first = last_pipeline(ws)
    assert [s["ran"] for s in first] == [True, True]
    curated, trained = runs(ws, "curate"), runs(ws, "train")
    assert len(curated) == len(trained) == 1

    assert main(["pipeline", "-w", str(ws)]) == 0  # nothing changed: nothing runs
    assert [s["ran"] for s in last_pipeline(ws)] == [False, False]
    assert runs(ws, "curate") == curated and runs(ws, "train") == trained
    assert "up to date" in capfd.readouterr().err

    write_pipeline(ws, steps=3)  # a training setting: training reruns, curation does not
    assert main(["pipeline", "-w", str(ws)]) == 0
    assert [s["ran"] for s in last_pipeline(ws)] == [False, True]
    assert runs(ws, "curate") == curated and len(runs(ws, "train")) == 2

    raw = sorted((ws / "data" / "raw").rglob("*.jsonl"))[0]  # an edited raw file: curation and what follows
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join(lines[:-1]) + "\n")
    assert main(["pipeline", "-w", str(ws)]) == 0
    assert [s["ran"] for s in last_pipeline(ws)] == [True, True]

    assert main(["pipeline", "-w", str(ws), "--from", "train"]) == 0
    assert [s["ran"] for s in last_pipeline(ws)] == [False, True]
    assert main(["pipeline", "-w", str(ws), "--force"]) == 0
    assert [s["ran"] for s in last_pipeline(ws)] == [True, True]
    manifest = json.loads(max((ws / "runs").glob("pipeline-*")).joinpath("manifest.json").read_text())
    assert set(manifest["parents"]) == {s["run_id"] for s in last_pipeline(ws)}


def test_a_deleted_output_or_a_failing_stage(model_workspace, capfd):
    ws = model_workspace
    write_pipeline(ws)
    assert main(["pipeline", "-w", str(ws)]) == 0
    (ws / "data" / "splits" / "train.jsonl").unlink()  # curation's output is gone: it runs again
    assert main(["pipeline", "-w", str(ws)]) == 0
    assert last_pipeline(ws)[0]["ran"] and (ws / "data" / "splits" / "train.jsonl").is_file()

    stages = [{"stage": "curate"}, {"stage": "train", "overrides": ["training.learning_rate=-1"]}]
    (ws / "configs" / "pipeline.yaml").write_text(yaml.safe_dump({"stages": stages}))
    capfd.readouterr()
    assert main(["pipeline", "-w", str(ws)]) == 2
    err = capfd.readouterr().err
    assert "training.learning_rate" in err and "stage train failed (exit 2)" in err


def test_bad_pipeline_configs_name_the_key(workspace, capfd):
    ws = workspace
    (ws / "configs" / "pipeline.yaml").write_text(yaml.safe_dump({"stages": [{"stage": "deploy"}]}))
    assert main(["pipeline", "-w", str(ws)]) == 2
    assert "stages.0.stage" in capfd.readouterr().err
    (ws / "configs" / "pipeline.yaml").write_text(yaml.safe_dump({"stages": [{"stage": "curate"}]}))
    assert main(["pipeline", "-w", str(ws), "--from", "train"]) == 2
    assert "--from 'train'" in capfd.readouterr().err
