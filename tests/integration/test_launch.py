"""`tunewright launch train --executor slurm`: the script (a golden file, `bash -n`), the submission through a fake
`sbatch` on PATH, `launch status | logs | cancel` through fake `squeue` / `sacct` / `scancel`, and the generated
script run as Slurm runs it (SLURM_* variables, `srun` and `scontrol` mocked) training with torchrun on two CPU
processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunewright.cli.main import main

GOLDEN = Path(__file__).parent / "golden" / "launch-train-slurm-2x8.sh"
TWO_BY_EIGHT = [
    "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu", "--time", "04:00:00", "--account", "llm",
    "--container-image", "nvcr.io/nvidia/pytorch:25.01-py3", "--container-mount", "/lustre:/lustre",
    "--nccl", "NCCL_SOCKET_IFNAME=ib0", "--nccl", "NCCL_DEBUG=WARN", "--sbatch-arg", "--exclusive",
]  # fmt: skip
FAKES = {
    "sbatch": 'echo "$@" >> "$FAKE_SLURM/sbatch.args"; cp "${@: -1}" "$FAKE_SLURM/submitted.sbatch"; echo 4242',
    "squeue": 'if [ -e "$FAKE_SLURM/ended" ]; then echo "Invalid job id specified" >&2; exit 1; fi; echo RUNNING',
    "sacct": "echo COMPLETED",
    "scancel": 'echo "$@" >> "$FAKE_SLURM/scancel.args"',
    "scontrol": "echo localhost",  # scontrol show hostnames: the allocation's first node
    "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"',  # one task on this "node"
}


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch, squeue, sacct, scancel, scontrol and srun on PATH, recording what they are asked."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(bin_dir))
    return bin_dir


def test_dry_run_prints_the_script_for_2_nodes_of_8_gpus(workspace, capsys):
    assert main(["launch", "train", "-w", str(workspace), *TWO_BY_EIGHT, "--dry-run", "training.max_steps=100"]) == 0
    script = capsys.readouterr().out.replace(str(workspace), "/WS")
    assert script == GOLDEN.read_text()
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    assert not (workspace / "runs").exists() or not list((workspace / "runs").glob("launch-*"))


def test_submission_is_a_launch_run_and_status_logs_cancel_follow_the_job(workspace, fake_slurm, capsys):
    ws = workspace
    assert main(["launch", "train", "-w", str(ws), "--nodes", "2", "--gpus-per-node", "4", "training.seed=7"]) == 0
    out = capsys.readouterr().out
    assert "submitted Slurm job 4242" in out
    (run,) = (ws / "runs").glob("launch-*")
    manifest = json.loads((run / "manifest.json").read_text())
    results = manifest["results"]
    assert results["job_id"] == "4242" and results["nodes"] == 2 and len(results["config_sha256"]) == 64
    assert (run / "job.sbatch").read_text() == (fake_slurm / "submitted.sbatch").read_text()
    assert (
        "--nproc-per-node 4" in (run / "job.sbatch").read_text()
        and "training.seed=7" in (run / "job.sbatch").read_text()
    )
    assert (fake_slurm / "sbatch.args").read_text().startswith("--parsable ")

    assert main(["launch", "status", run.name, "-w", str(ws)]) == 0
    assert capsys.readouterr().out.strip() == "job 4242: RUNNING"
    (fake_slurm / "ended").touch()
    assert main(["launch", "status", run.name, "-w", str(ws)]) == 0
    assert capsys.readouterr().out.strip() == "job 4242: COMPLETED"
    assert main(["launch", "logs", run.name, "-w", str(ws)]) == 2  # the job has written nothing yet
    assert "does not exist yet" in capsys.readouterr().err
    (ws / results["log"]).write_text("".join(f"line {i}\n" for i in range(300)))
    assert main(["launch", "logs", run.name, "-w", str(ws), "-n", "2"]) == 0
    assert capsys.readouterr().out == "line 298\nline 299\n"
    assert main(["launch", "cancel", run.name, "-w", str(ws)]) == 0
    assert (fake_slurm / "scancel.args").read_text().strip() == "4242"

    # a different config is a different digest
    assert main(["launch", "train", "-w", str(ws), "training.seed=8"]) == 0
    digests = {
        json.loads((r / "manifest.json").read_text())["results"]["config_sha256"]
        for r in (ws / "runs").glob("launch-*")
    }
    assert len(digests) == 2


def test_bad_launches_fail_before_anything_is_submitted(workspace, fake_slurm, capsys):
    ws = workspace
    for args, message in (
        (["--time", "four hours"], "not a Slurm time"),
        (["--nccl", "IB_HCA=mlx5"], "NCCL_*"),
        (["--nodes", "0"], "--nodes"),
        (["--executor", "kubernetes"], "launch runs on slurm"),
        (["training.no_such_key=1"], "training.no_such_key"),
    ):
        assert main(["launch", "train", "-w", str(ws), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (fake_slurm / "sbatch.args").exists()


def test_the_script_trains_under_slurm_with_torchrun_on_two_processes(model_workspace, fake_slurm, capsys):
    ws = model_workspace
    assert main(["curate", "-w", str(ws)]) == 0
    args = ["--nodes", "1", "--gpus-per-node", "2", "--dry-run", "training.max_steps=3", "training.eval_every=3"]
    assert main(["launch", "train", "-w", str(ws), *args]) == 0
    script = tmp = ws / "job.sbatch"
    tmp.write_text(capsys.readouterr().out)
    env = {**os.environ, "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (ws / "runs").glob("train-*")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["host"]["world_size"] == 2 and manifest["results"]["steps"] == 3
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
