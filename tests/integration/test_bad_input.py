"""Bad input through the CLI: one clear message, exit code 2, nothing half-written."""

import json

import pytest

from tunewright.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def run_dirs(ws):
    return sorted(p.name for p in (ws / "runs").iterdir())


def test_unknown_config_key(workspace, capsys):
    cfg = workspace / "configs" / "curate.yaml"
    cfg.write_text(cfg.read_text().replace("exact_dedup: true", "exact_dedupe: true"))
    code, err = run(capsys, "curate", "-w", str(workspace))
    assert code == 2
    assert "exact_dedupe: unknown key" in err
    assert "Traceback" not in err
    assert run_dirs(workspace) == []


def test_unknown_override_key(workspace, capsys):
    code, err = run(capsys, "curate", "-w", str(workspace), "split.tset=0.2")
    assert code == 2
    assert "split.tset: unknown key" in err


def test_missing_source_file(workspace, capsys):
    (workspace / "data/raw/runbook_chats.jsonl").unlink()
    code, err = run(capsys, "curate", "-w", str(workspace))
    assert code == 2
    assert "runbook_chats" in err and "file not found" in err
    assert not any((workspace / "data/splits").iterdir())
    assert run_dirs(workspace) == []


def test_missing_config_file(workspace, capsys):
    code, err = run(capsys, "train", "-w", str(workspace), "-c", "configs/nope.yaml")
    assert code == 2
    assert "config file not found" in err


def test_malformed_jsonl_split_for_training(model_workspace, capsys):
    ws = model_workspace
    assert main(["curate", "-w", str(ws)]) == 0
    capsys.readouterr()
    train = ws / "data/splits/train.jsonl"
    lines = train.read_text().splitlines()
    lines[4] = lines[4][:20]
    train.write_text("\n".join(lines) + "\n")
    before = run_dirs(ws)
    code, err = run(capsys, "train", "-w", str(ws), "training.max_steps=1")
    assert code == 2
    assert f"{train}:5: malformed JSON" in err
    assert run_dirs(ws) == before
    assert [p.name for p in (ws / "runs").iterdir() if p.name.startswith(".")] == []


def test_wrong_record_shape_for_training(model_workspace, capsys):
    ws = model_workspace
    train = ws / "data/splits/train.jsonl"
    train.parent.mkdir(parents=True, exist_ok=True)
    train.write_text(json.dumps({"text": "a document, not a conversation"}) + "\n")
    code, err = run(capsys, "train", "-w", str(ws), "data.validation_path=null", "training.max_steps=1")
    assert code == 2
    assert f"{train}:1: expected 'messages' or 'prompt'+'response'" in err


def test_unknown_target_module(model_workspace, capsys):
    ws = model_workspace
    assert main(["curate", "-w", str(ws)]) == 0
    code, err = run(capsys, "train", "-w", str(ws), "peft.target_modules=[q_proj, attn_qkv]", "training.max_steps=1")
    assert code == 2
    assert "attn_qkv not found in the model" in err


def test_target_outside_allowlist(model_workspace, capsys):
    ws = model_workspace
    assert main(["curate", "-w", str(ws)]) == 0
    code, err = run(capsys, "train", "-w", str(ws), "training.optimizer._target_=os.system", "training.max_steps=1")
    assert code == 2
    assert "not under an allowed prefix" in err


@pytest.mark.parametrize("ref", ["runs/absent", "latest:train"])
def test_export_of_a_missing_run(workspace, capsys, ref):
    code, err = run(capsys, "export", ref, "-w", str(workspace))
    assert code == 2
    assert "no completed run" in err
    assert not any((workspace / "exports").iterdir())


def test_eval_task_file_missing(model_workspace, capsys):
    code, err = run(capsys, "eval", "-w", str(model_workspace), "--model", "models/tiny-base")
    assert code == 2
    assert "data/splits/test.jsonl" in err and "not found" in err


def snapshot(ws):
    """Every file under the workspace's data/, reports/ and runs/ with its bytes."""
    return {
        p.relative_to(ws).as_posix(): p.read_bytes()
        for sub in ("data", "reports", "runs")
        for p in sorted((ws / sub).rglob("*"))
        if p.is_file()
    }


def test_a_failure_writing_one_output_changes_no_output_and_records_no_run(workspace, capsys):
    ws = workspace
    assert main(["curate", "-w", str(ws)]) == 0
    before = snapshot(ws)
    card = ws / "reports/data-card.md"
    card.unlink()
    card.mkdir()  # the data card cannot be written
    code, err = run(capsys, "curate", "-w", str(ws), "split.seed=7")
    assert code == 2
    assert f"{card} is a directory, but this output is a file" in err and "Traceback" not in err
    card.rmdir()
    after = snapshot(ws)
    del before["reports/data-card.md"]
    assert after == before  # the same splits, quarantine, curated file and runs, byte for byte
    assert [p.name for p in ws.rglob(".*")] == []  # no staged leftovers


def test_an_os_error_names_the_path(workspace, capsys):
    (workspace / "data/curated").rmdir()
    (workspace / "data/curated").write_text("a file where a directory should be")
    code, err = run(capsys, "curate", "-w", str(workspace))
    assert code == 2
    assert f"cannot use {workspace / 'data/curated'}" in err and "Traceback" not in err
    assert run_dirs(workspace) == []
