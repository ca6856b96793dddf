"""Sharded curation on Ray: the same bytes as one process, resumable shard by shard, keyed by settings.

One local Ray cluster serves the whole module (2 CPUs, no dashboard); curation runs in this
process and joins it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tunewright.cli.main import main
from tunewright.core.errors import UserError, WorkFailed
from tunewright.core.workspace import init_workspace
from tunewright.curate.config import CurateConfig
from tunewright.curate.stage import run_curate

sys.path.insert(0, str(Path(__file__).parent))
from scale_corpus import curate_config, write_corpus

SBATCH = """n=$(ls "$FAKE_SLURM"/job-*.sbatch 2>/dev/null | wc -l); id=$((100 + n))
echo "$@" >> "$FAKE_SLURM/sbatch.args"; cp "${@: -1}" "$FAKE_SLURM/job-$id.sbatch"; echo $id"""


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root)


def _workspace(root: Path, corpus: tuple[Path, dict[str, str]], name: str) -> Path:
    ws = root / name
    for d in ("raw", "eval"):
        (ws / d).mkdir(parents=True, exist_ok=True)
        for f in (corpus[0] / d).iterdir():
            (ws / d / f.name).write_bytes(f.read_bytes())
    return ws


def _curate(ws: Path, paths: dict[str, str], **extra: object):
    return run_curate(ws, CurateConfig.model_validate(curate_config(paths, **extra)), ["curate"])


def _outputs(ws: Path) -> dict[str, bytes]:
    """Split files as written, quarantine files with their lines sorted, and the data card."""
    out = {f"splits/{p.name}": p.read_bytes() for p in sorted((ws / "data" / "splits").glob("*.jsonl"))}
    for p in sorted((ws / "data" / "quarantine").rglob("*.jsonl")):
        out[f"quarantine/{p.name}"] = b"".join(sorted(p.read_bytes().splitlines(keepends=True)))
    out["card"] = (ws / "reports" / "data-card.md").read_bytes()
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, corpus) -> dict[str, bytes]:
    ws = _workspace(tmp_path_factory.mktemp("single"), corpus, "ws")
    _curate(ws, corpus[1])
    return _outputs(ws)


def test_splits_and_quarantine_identical_single_pool_and_ray(tmp_path, corpus, baseline, ray_cluster):
    quarantined = {k for k in baseline if k.startswith("quarantine/")}
    for step in ("read", "normalise", "language", "pii", "exact_dedup", "fuzzy_dedup", "decontaminate"):
        assert f"quarantine/{step}.jsonl" in quarantined, step  # every planted fault was caught
    assert b"shared-id@a:" in baseline["splits/train.jsonl"]  # repeated ids got their suffix
    assert b"Please answer briefly" in baseline["splits/train.jsonl"]  # common phrasing is not contamination
    for name in ("train", "validation", "test"):  # every split keeps input order
        origins = [
            (r["source"], r["meta"]["line"]) for r in map(json.loads, baseline[f"splits/{name}.jsonl"].splitlines())
        ]
        assert origins == sorted(origins)

    pool = _workspace(tmp_path, corpus, "pool")
    _curate(pool, corpus[1], workers=3)
    assert _outputs(pool) == baseline
    for world in (1, 3, 7):
        ws = _workspace(tmp_path, corpus, f"ray{world}")
        run = _curate(ws, corpus[1], executor="ray", scale={"world_size": world})
        sharding = run.results["sharding"]["records"]
        assert sharding["partitions"] == world and sharding["shards"] >= world
        assert _outputs(ws) == baseline, f"world size {world}"


def test_changed_jaccard_threshold_reruns_fuzzy_dedup_and_after_only(tmp_path, corpus, baseline, ray_cluster):
    ws = _workspace(tmp_path, corpus, "ws")
    _curate(ws, corpus[1], executor="ray", scale={"world_size": 3})
    again = _curate(ws, corpus[1], executor="ray", scale={"world_size": 3})
    assert all(s["ran"] == 0 for s in again.results["sharding"]["records"]["stages"].values())
    assert _outputs(ws) == baseline

    changed = curate_config(corpus[1], executor="ray", scale={"world_size": 3})
    changed["fuzzy_dedup"]["jaccard_threshold"] = 0.9
    run = run_curate(ws, CurateConfig.model_validate(changed), ["curate"])
    stages = run.results["sharding"]["records"]["stages"]
    before = ("map", "ids", "exact", "fuzzy_bands")
    assert all(stages[s]["ran"] == 0 and stages[s]["reused"] == stages[s]["tasks"] for s in before), stages
    after = ("fuzzy_pairs", "fuzzy_components", "decontam_count", "decontam_ignored", "rank", "bounds", "assemble")
    assert all(stages[s]["ran"] == stages[s]["tasks"] for s in after), stages
    work = ws / "data" / ".curate-work" / "records"
    assert len(list(work.glob("fuzzy_pairs-*"))) == 1  # the old threshold's work is pruned

    marker = next(work.glob("map-*")) / "KEY"
    marker.write_text("another key\n")
    with pytest.raises(UserError, match="holds work for another key"):
        run_curate(ws, CurateConfig.model_validate(changed), ["curate"])


def test_worker_killed_mid_stage_then_rerun_does_only_unfinished_shards(tmp_path, corpus, baseline, ray_cluster):
    ws = _workspace(tmp_path, corpus, "ws")
    stage_glob = "data/.curate-work/records/fuzzy_bands-*"
    killed: list[int] = []

    def kill_first_started() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for started in ws.glob(f"{stage_glob}/t*.started.json"):
                if not started.with_name(started.name.replace("started", "done")).exists():
                    pid = json.loads(started.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_first_started)
    killer.start()
    with pytest.raises(WorkFailed, match="run the same command again"):
        _curate(ws, corpus[1], executor="ray", scale={"world_size": 7, "retries": 0})
    killer.join()
    assert killed
    stage = next(ws.glob(stage_glob))
    finished = len(list(stage.glob("t*.done.json")))
    assert finished < 7

    run = _curate(ws, corpus[1], executor="ray", scale={"world_size": 7, "retries": 0})
    stages = run.results["sharding"]["records"]["stages"]
    assert stages["map"]["ran"] == 0
    assert stages["fuzzy_bands"] == {"tasks": 7, "ran": 7 - finished, "reused": finished}
    assert _outputs(ws) == baseline


def test_slurm_job_arrays_chained_by_afterok_give_the_same_output(tmp_path, corpus, baseline, monkeypatch, capsys):
    ws = _workspace(tmp_path, corpus, "ws")
    init_workspace(ws)
    config = ws / "configs" / "curate.yaml"
    slurm = {"partition": "cpu", "time": "00:30:00", "max_parallel": 4, "setup": ["echo setting up"]}
    config.write_text(yaml.safe_dump(curate_config(corpus[1], scale={"world_size": 2, "slurm": slurm})))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text("#!/bin/bash\n" + SBATCH + "\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("FAKE_SLURM", str(fake))
    monkeypatch.setenv("PATH", f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}")

    assert main(["curate", "--executor", "slurm", "--dry-run", "-w", str(ws)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("#!/bin/bash") == 12 and not (fake / "sbatch.args").exists()
    assert not (ws / "runs").exists() or not list((ws / "runs").iterdir())

    assert main(["curate", "--executor", "slurm", "-w", str(ws)]) == 0
    calls = (fake / "sbatch.args").read_text().splitlines()
    assert len(calls) == 12 and "--dependency" not in calls[0]
    assert all(f"--dependency=afterok:{100 + i}" in call for i, call in enumerate(calls[1:]))
    scripts = sorted(fake.glob("job-*.sbatch"))
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert "#SBATCH --array=0-1%4" in scripts[0].read_text() and "#SBATCH --partition=cpu" in scripts[0].read_text()
    assert printed == "\n".join(s.read_text() for s in scripts)

    for script in scripts:  # the cluster: every array task, then the finishing job
        text = script.read_text()
        array = next((line.split("=")[1] for line in text.splitlines() if line.startswith("#SBATCH --array")), None)
        tasks = range(int(array.split("-")[1].split("%")[0]) + 1) if array else [None]
        for task in tasks:
            env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_JOB_ID": "1"}
            res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stderr[-3000:]
    assert _outputs(ws) == baseline
    runs = {json.loads(m.read_text())["stage"] for m in (ws / "runs").glob("*/manifest.json")}
    assert runs == {"launch", "curate"}

    again = subprocess.run(["bash", str(scripts[0])], env={**env, "SLURM_ARRAY_TASK_ID": "1"}, capture_output=True)
    assert again.returncode == 0 and b"map task 1: reused" in again.stdout  # a requeued task costs nothing


def test_ray_missing_says_how_to_install_it(workspace, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["curate", "--executor", "ray", "--workspace", str(workspace)]) == 2
    assert "pip install 'tunewright[ray]'" in capsys.readouterr().err


def test_wrong_ray_address_fails_fast(workspace):
    began = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "tunewright", "curate", "--executor", "ray", "--ray-address", "127.0.0.1:9"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.monotonic() - began < 60


def test_semantic_dedup_is_refused_when_sharded(workspace, capsys):
    path = workspace / "configs" / "curate.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["semantic_dedup"] = {"enabled": True}
    path.write_text(yaml.safe_dump(cfg))
    assert main(["curate", "--executor", "ray", "--workspace", str(workspace)]) == 2
    assert "semantic_dedup.enabled" in capsys.readouterr().err
