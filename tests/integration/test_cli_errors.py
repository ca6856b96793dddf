"""Usage and reference errors through the CLI: one line on stderr, exit code 2, never a traceback."""

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tunewright.cli.main import main
from tunewright.core.model_location import hub_unreachable
from tunewright.core.runs import start_run

TUNEWRIGHT = str(Path(sys.executable).with_name("tunewright"))  # the installed console script


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bogus"], "No such option: --bogus (see 'tunewright --help')"),
        (["nosuchverb"], "No such command 'nosuchverb'."),
        (["train", "-j", "x"], "No such option: -j (see 'tunewright train --help')"),
    ],
)
def test_usage_errors_of_the_installed_command_are_one_line(argv, says):
    proc = subprocess.run([TUNEWRIGHT, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and says in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["curate", "--workers"], "Option '--workers' requires an argument."),
        (["export", "a", "b"], "Got unexpected extra argument"),
        (["config", "show"], "Missing argument 'stage'."),
        (["config", "show", "nope"], "unknown stage 'nope'; expected one of: curate, train, eval, serve"),
        (["runs", "show", "latest:train"], "no completed run 'latest:train'"),
        (["eval", "gates=[]", "--model", "x"], "options go before the key=value overrides: move --model before them"),
        (["eval", "export-review"], "Missing argument 'RUN'."),
        (["eval", "import-review", "latest:eval"], "Missing argument 'FILE'."),
        (["eval", "export-review", "latest:eval", "--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, argv, says):
    assert main([*argv, *(["-w", str(tmp_path)] if argv[0] == "runs" else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]


def test_no_arguments_prints_the_help(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "Usage: tunewright" in captured.out and "config" in captured.out and not captured.err.strip()


def fake_run(ws, stage):
    with start_run(ws, stage, [], {"model": None}) as run:
        run.results["passed"] = True
    return run.run_id


@pytest.mark.parametrize(
    "argv", [["export", "latest:eval"], ["eval", "--model", "latest:eval"], ["serve", "latest:curate"]]
)
def test_a_reference_to_the_wrong_kind_of_run_says_what_was_expected(workspace, capsys, argv):
    eval_id, curate_id = fake_run(workspace, "eval"), fake_run(workspace, "curate")
    assert main([*argv, "-w", str(workspace)]) == 2
    err = capsys.readouterr().err
    rid, stage = (curate_id, "curate") if "curate" in argv[-1] else (eval_id, "eval")
    assert f"is run {rid} of stage '{stage}'; expected a training run" in err
    assert "Traceback" not in err and "KeyError" not in err


def test_a_training_run_without_its_output_is_named(workspace, capsys):
    with start_run(workspace, "train", [], {"model": {"name_or_path": "models/tiny-base", "dtype": "float32"}}):
        pass
    assert main(["export", "latest:train", "-w", str(workspace)]) == 2
    assert "has neither adapter/ nor model/" in capsys.readouterr().err


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the hub fails the test (the probe uses urllib)."""
    hub_unreachable.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield
    hub_unreachable.cache_clear()


def test_a_mistyped_local_model_path_fails_at_once(model_workspace, capsys, no_network):
    code = main(["train", "-w", str(model_workspace), "model.name_or_path=models/tiny-bse"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"model.name_or_path: no model directory at {model_workspace / 'models/tiny-bse'}" in err


def test_an_offline_hub_id_fails_at_once_with_what_to_do(model_workspace, capsys, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["train", "-w", str(model_workspace), "model.name_or_path=acme/no-such-model"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'acme/no-such-model' is not a directory" in err and "not in the Hugging Face cache" in err
    assert "HF_HUB_OFFLINE is set" in err and "hf download acme/no-such-model" in err


def test_an_unreachable_hub_is_detected_by_one_quick_probe(model_workspace, capsys, monkeypatch):
    hub_unreachable.cache_clear()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    try:
        assert main(["eval", "-w", str(model_workspace), "--model", "acme/no-such-model"]) == 2
    finally:
        hub_unreachable.cache_clear()
    assert "http://127.0.0.1:9 cannot be reached" in capsys.readouterr().err


def test_config_show_prints_every_key_with_its_description(workspace, capsys):
    assert main(["config", "show", "train", "-w", str(workspace), "training.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "  max_steps: 7" in out and "# Optimizer steps to train." in out
    assert "name_or_path: models/tiny-base" in out and "_target_: torch.optim.AdamW" in out
    assert main(["config", "show", "curate", "-w", str(workspace / "elsewhere")]) == 0
    assert "max_matches: 10" in capsys.readouterr().out
