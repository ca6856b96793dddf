"""`tunewright curate --executor slurm`: each stage of a sharded curation as a Slurm job array.

Submission plans the shards and keys every stage here (on the login node), saves each pass's
`Job` in its work folder, and submits one array per stage (task i = shard or partition i),
each waiting on the one before (`--dependency=afterok`). The last job runs the same
`tunewright curate` with the same config in-process: every task is then already done and
reused, so it only gathers the outputs and records the curate run; if a task is missing
(a node lost, a requeue gone wrong) it does that task itself. Array tasks skip work that
has a completion record, so a requeued task costs nothing. The workspace and work folder
must be on a filesystem every node sees.
"""

from __future__ import annotations

import pickle
import shlex
from pathlib import Path

from tunewright.core.runs import Run
from tunewright.curate.config import CurateConfig, SlurmArrayConfig
from tunewright.curate.shards.driver import make_job
from tunewright.curate.shards.executors import InProcess
from tunewright.curate.shards.job import Job, prepare

LOGS = Path("logs") / "curate"
JOB_FILE = "job.pkl"


def _header(s: SlurmArrayConfig, name: str, log_dir: Path, array: str | None) -> list[str]:
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={s.cpus_per_task}",
    ]
    if array:
        lines.append(f"#SBATCH --array={array}")
    named = {"partition": s.partition, "time": s.time, "account": s.account, "mem": s.mem}
    lines += [f"#SBATCH --{key}={value}" for key, value in named.items() if value is not None]
    out = f"{log_dir}/%x-%A_%a.out" if array else f"{log_dir}/%x-%j.out"
    lines += [f"#SBATCH --output={out}", "#SBATCH --open-mode=append", "#SBATCH --requeue"]
    lines += [f"#SBATCH {arg}" for arg in s.sbatch_args]
    return [*lines, "set -euo pipefail", *s.setup]


def stage_script(s: SlurmArrayConfig, job: Job, stage: str, tasks: int, log_dir: Path) -> str:
    """The array job running every task of `stage`."""
    limit = f"%{s.max_parallel}" if s.max_parallel else ""
    what = "pairs" if job.pairs else "records"
    lines = _header(s, f"tw-curate-{what}-{stage}", log_dir, f"0-{tasks - 1}{limit}")
    job_file = shlex.quote(str(Path(job.root) / JOB_FILE))
    lines.append(f'tunewright curate-task {job_file} {stage} "$SLURM_ARRAY_TASK_ID"')
    return "\n".join(lines) + "\n"


def finish_script(s: SlurmArrayConfig, workspace: Path, config: Path, overrides: list[str], log_dir: Path) -> str:
    """The last job: the curate run itself, reusing every task the arrays did."""
    q = shlex.quote
    lines = _header(s, "tw-curate-finish", log_dir, None)
    args = ["tunewright curate --executor slurm --in-job", f"-c {q(str(config))}", f"-w {q(str(workspace))}"]
    lines.append(" ".join([*args, *map(q, overrides)]))
    return "\n".join(lines) + "\n"


def plan_jobs(cfg: CurateConfig, workspace: Path, run: Run) -> list[Job]:
    """Each pass's job, planned and keyed as the finishing run will plan and key it."""
    from tunewright.curate.stage import admitted_sources
    from tunewright.curate.steps import build_pair_steps, build_steps

    sources, _ = admitted_sources(cfg, workspace, run)
    chat = [s for s in sources if s.kind == "chat"]
    pairs = [s for s in sources if s.kind == "preference"]
    world = InProcess().world_size(cfg.scale)
    jobs = []
    if chat or not pairs:
        jobs.append(make_job(cfg, workspace, run, chat, build_steps(cfg, workspace), world, False))
    if pairs:
        jobs.append(make_job(cfg, workspace, run, pairs, build_pair_steps(cfg, workspace), world, True))
    return jobs


def scripts(cfg: CurateConfig, workspace: Path, jobs: list[Job], config: Path, overrides: list[str]) -> list[str]:
    """Every script to submit, in dependency order: the stages of each pass, then the finishing job."""
    log_dir = workspace / LOGS
    out = [stage_script(cfg.scale.slurm, job, stage, n, log_dir) for job in jobs for stage, n in job.stages()]
    return [*out, finish_script(cfg.scale.slurm, workspace, config, overrides, log_dir)]


def save_jobs(jobs: list[Job]) -> None:
    """Create the stage folders and write each pass's job where its array tasks load it."""
    for job in jobs:
        prepare(job)
        with (Path(job.root) / JOB_FILE).open("wb") as fh:
            pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
