"""Slurm: the batch script that runs `tunewright train` on N nodes, and sbatch / squeue / sacct / scancel.

One task per node: `srun` starts `torchrun` on every node of the allocation, and torchrun's
c10d rendezvous on the allocation's first node (`rdzv_port`) joins their processes into one
world of nodes x gpus_per_node ranks, with the job id as the rendezvous id; tunewright's
training (`train/distributed.py`) takes RANK / WORLD_SIZE / LOCAL_RANK from torchrun. The script
asks for requeueing and, when Slurm has restarted the job (SLURM_RESTART_COUNT > 0), resumes
from the newest checkpoint. The workspace must be on a filesystem every node sees. The same
torchrun line runs under Kubernetes or SkyPilot with their node-rank variables (README).

The script is plain text built here, not by a library: it is short, and the golden test of
`launch train --dry-run` pins it line for line.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from pydantic import Field, field_validator

from tunewright.core.config import StrictModel
from tunewright.core.errors import UserError

TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SlurmConfig(StrictModel):
    nodes: int = Field(1, gt=0)
    """Nodes of the allocation (one torchrun per node)."""
    gpus_per_node: int = Field(1, gt=0)
    """GPUs per node, and so processes per node (torchrun --nproc-per-node)."""
    partition: str | None = None
    time: str | None = None
    """Wall-clock limit in Slurm's format (minutes, HH:MM:SS or D-HH:MM:SS)."""
    account: str | None = None
    job_name: str = "tunewright-train"
    container_image: str | None = None
    """An image for srun's container plugin (pyxis/enroot: --container-image)."""
    container_mounts: list[str] = Field(default_factory=list)
    """SRC:DST mounts into the container (the workspace must be one of them, at the same path)."""
    nccl: dict[str, str] = Field(default_factory=dict)
    """NCCL_* settings exported before torchrun (e.g. NCCL_SOCKET_IFNAME=ib0)."""
    rdzv_port: int = Field(29500, gt=0, le=65535)
    sbatch_args: list[str] = Field(default_factory=list)
    """More #SBATCH options, as they are (e.g. --qos=high, --exclusive)."""

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not TIME.match(value):
            raise ValueError(f"{value!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)")
        return value

    @field_validator("nccl")
    @classmethod
    def _nccl(cls, values: dict[str, str]) -> dict[str, str]:
        bad = [k for k in values if not (k.startswith("NCCL_") and ENV_NAME.match(k))]
        if bad:
            raise ValueError(f"{bad}: NCCL settings are environment variables named NCCL_*")
        return values


def train_script(cfg: SlurmConfig, workspace: Path, config: Path, overrides: list[str], log_dir: Path) -> str:
    """The sbatch script that trains `config` (with `overrides`) in `workspace` on the allocation."""
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name={cfg.job_name}", f"#SBATCH --nodes={cfg.nodes}"]
    lines += ["#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={cfg.gpus_per_node}"]
    lines += [f"#SBATCH --{key}={value}" for key, value in _optional(cfg)]
    lines += [f"#SBATCH --output={log_dir}/%x-%j.out", "#SBATCH --open-mode=append", "#SBATCH --requeue"]
    lines += [f"#SBATCH {arg}" for arg in cfg.sbatch_args]
    lines += ["set -euo pipefail"]
    lines += [f"export {key}={q(value)}" for key, value in sorted(cfg.nccl.items())]
    lines += [
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'resume=""',
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then resume="--resume latest"; fi',
    ]
    srun = ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    if cfg.container_image:
        srun.append(f"--container-image={q(cfg.container_image)}")
    if cfg.container_mounts:
        srun.append(f"--container-mounts={q(','.join(cfg.container_mounts))}")
    torchrun = ["torchrun", '--nnodes "$SLURM_JOB_NUM_NODES"', f"--nproc-per-node {cfg.gpus_per_node}"]
    torchrun += ["--rdzv-backend c10d", f'--rdzv-endpoint "$head_node:{cfg.rdzv_port}"', '--rdzv-id "$SLURM_JOB_ID"']
    train = ["-m tunewright train", f"-c {q(str(config))}", f"-w {q(str(workspace))}", *map(q, overrides)]
    lines.append(" \\\n  ".join([" ".join(srun), " ".join(torchrun), " ".join(train) + " $resume"]))
    return "\n".join(lines) + "\n"


def _optional(cfg: SlurmConfig) -> list[tuple[str, str]]:
    named = {"partition": cfg.partition, "time": cfg.time, "account": cfg.account}
    return [(key, value) for key, value in named.items() if value is not None]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UserError(f"{name} is not on PATH: launch with --executor slurm from a Slurm login node")
    return found


def _run(cmd: list[str], check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if res.returncode != 0 and check:
        raise UserError(f"{Path(cmd[0]).name} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout.strip() if res.returncode == 0 else ""


def submit(script: Path, after: str | None = None) -> str:
    """Submit `script` with sbatch (to start once job `after` has succeeded); the job id."""
    dependency = [f"--dependency=afterok:{after}"] if after else []
    out = _run([_tool("sbatch"), "--parsable", *dependency, str(script)])
    job = out.splitlines()[-1].split(";")[0] if out else ""
    if not job.isdigit():
        raise UserError(f"sbatch answered {out!r}, not a job id")
    return job


def job_state(job: str) -> str:
    """The job's state: squeue's while it is queued or running, sacct's once it has ended."""
    state = _run([_tool("squeue"), "-h", "-j", job, "-o", "%T"], check=False)  # an ended job may be an error
    if state:
        return state.splitlines()[0]
    ended = _run([_tool("sacct"), "-n", "-X", "-P", "-j", job, "-o", "State"])
    return ended.splitlines()[0].strip() if ended else "UNKNOWN"


def cancel(job: str) -> None:
    _run([_tool("scancel"), job])
