"""`tunewright launch train --executor slurm`: the same training run on a cluster, and `launch status|logs|cancel`.

The training config is loaded and checked here, before anything is submitted; the sbatch script
(`runtimes/slurm.py`) runs `torchrun ... -m tunewright train` with the same config and overrides
on every node. `--dry-run` prints the script and submits nothing. A submission is recorded as a
`launch` run holding the script, the job id and the digest of the resolved training config;
the training itself is recorded by rank 0 as a `train` run, as on one machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import UserError

launch_app = typer.Typer(help="Run training on a cluster (Slurm) and follow the job.", no_args_is_help=True)
LOGS = Path("logs") / "launch"


def register(app: typer.Typer) -> None:
    app.add_typer(launch_app, name="launch")


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for spec in values or []:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {spec!r}: expected KEY=VALUE")
        out[key] = value
    return out


@launch_app.command("train")
def train_cmd(
    config: Path = config_option("sft-lora.yaml"),
    executor: str = typer.Option("slurm", "--executor", help="slurm (Kubernetes / SkyPilot: see the README)."),
    nodes: int = typer.Option(1, "--nodes", help="Nodes (one torchrun per node)."),
    gpus_per_node: int = typer.Option(1, "--gpus-per-node", help="GPUs, and training processes, per node."),
    partition: str = typer.Option(None, "--partition"),
    time_limit: str = typer.Option(None, "--time", help="Wall-clock limit (HH:MM:SS or D-HH:MM:SS)."),
    account: str = typer.Option(None, "--account"),
    job_name: str = typer.Option("tunewright-train", "--job-name"),
    container_image: str = typer.Option(None, "--container-image", help="Image for srun (pyxis/enroot)."),
    container_mount: list[str] = typer.Option(None, "--container-mount", help="SRC:DST (repeatable)."),
    nccl: list[str] = typer.Option(None, "--nccl", help="An NCCL_* setting as KEY=VALUE (repeatable)."),
    rdzv_port: int = typer.Option(29500, "--rdzv-port", help="torchrun's rendezvous port on the first node."),
    sbatch_arg: list[str] = typer.Option(None, "--sbatch-arg", help="Another #SBATCH option (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the sbatch script; submit nothing."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Submit `tunewright train` (this config and overrides) as a Slurm job over --nodes x --gpus-per-node."""
    from pydantic import ValidationError

    from tunewright.core.config import dump_yaml
    from tunewright.core.runs import start_run
    from tunewright.runtimes.slurm import SlurmConfig, submit, train_script
    from tunewright.train.config import TrainConfig

    if executor != "slurm":
        raise UserError(f"--executor {executor!r}: launch runs on slurm (see the README for Kubernetes and SkyPilot)")
    ws = workspace_path(workspace)
    path = config_path(ws, config, "sft-lora.yaml")
    train_cfg = load_config(path, TrainConfig, overrides)  # a bad config fails here, not on the cluster
    try:
        slurm = SlurmConfig(
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            partition=partition,
            time=time_limit,
            account=account,
            job_name=job_name,
            container_image=container_image,
            container_mounts=container_mount or [],
            nccl=_pairs(nccl, "--nccl"),
            rdzv_port=rdzv_port,
            sbatch_args=sbatch_arg or [],
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UserError(f"--{'-'.join(str(p) for p in first['loc'][:1])}: {first['msg']}") from None
    script = train_script(slurm, ws, path.resolve(), list(overrides or []), ws / LOGS)
    if dry_run:
        typer.echo(script, nl=False)
        return
    resolved = train_cfg.model_dump(mode="json")
    digest = hashlib.sha256(dump_yaml(resolved).encode()).hexdigest()
    (ws / LOGS).mkdir(parents=True, exist_ok=True)
    record = {"executor": "slurm", "slurm": slurm.model_dump(), "train_config": str(path), "overrides": overrides}
    with start_run(ws, "launch", command_line(), record) as run:
        job_file = run.dir / "job.sbatch"
        job_file.write_text(script, encoding="utf-8")
        job = submit(job_file)
        run.results.update(
            job_id=job,
            script=f"runs/{run.run_id}/job.sbatch",
            config_sha256=digest,
            log=str(LOGS / f"{slurm.job_name}-{job}.out"),
            nodes=nodes,
            gpus_per_node=gpus_per_node,
        )
    typer.echo(f"submitted Slurm job {job} ({nodes} x {gpus_per_node} GPUs); run {run.run_id}")
    typer.echo(f"follow it: tunewright launch status {run.run_id} | launch logs {run.run_id}")


def _job(ws: Path, ref: str) -> dict:
    from tunewright.core.runs import find_run

    manifest = json.loads((find_run(ws, ref) / "manifest.json").read_text())
    if manifest.get("stage") != "launch":
        raise UserError(f"{ref}: run {manifest['run_id']} is a {manifest.get('stage')} run, not a launch")
    return manifest["results"]


@launch_app.command("status")
def status_cmd(run: str = typer.Argument(..., help="A launch run id."), workspace: Path = WORKSPACE) -> None:
    """The job's Slurm state (squeue while it is queued or running, sacct once it has ended)."""
    from tunewright.runtimes.slurm import job_state

    results = _job(workspace_path(workspace), run)
    typer.echo(f"job {results['job_id']}: {job_state(results['job_id'])}")


@launch_app.command("logs")
def logs_cmd(
    run: str = typer.Argument(..., help="A launch run id."),
    lines: int = typer.Option(100, "--lines", "-n", help="How many of the last lines."),
    workspace: Path = WORKSPACE,
) -> None:
    """The end of the job's output (every node's, in one file)."""
    ws = workspace_path(workspace)
    log = ws / _job(ws, run)["log"]
    if not log.is_file():
        raise UserError(f"{log} does not exist yet: the job has not started writing")
    typer.echo("\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]))


@launch_app.command("cancel")
def cancel_cmd(run: str = typer.Argument(..., help="A launch run id."), workspace: Path = WORKSPACE) -> None:
    """Cancel the job (scancel)."""
    from tunewright.runtimes.slurm import cancel

    job = _job(workspace_path(workspace), run)["job_id"]
    cancel(job)
    typer.echo(f"cancelled job {job}")
