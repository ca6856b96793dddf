"""`tunewright curate`: raw sources -> curated splits, quarantine and data card."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import UserError
from tunewright.core.runs import Run
from tunewright.curate.config import CurateConfig


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_cmd)
    app.command("curate-task", hidden=True)(curate_task_cmd)


def curate_cmd(
    config: Path = config_option("curate.yaml"),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Worker processes for the per-record steps (and MinHash threads)."
    ),
    executor: str = typer.Option(
        None, "--executor", help="local (default) | ray (sharded over a Ray cluster) | slurm (sharded, job arrays)."
    ),
    ray_address: str = typer.Option(None, "--ray-address", help="A running Ray cluster (default: start a local one)."),
    world_size: int = typer.Option(None, "--world-size", help="Shards and partitions of a sharded run, at least."),
    dry_run: bool = typer.Option(False, "--dry-run", help="executor slurm: print the sbatch scripts; submit nothing."),
    in_job: bool = typer.Option(False, "--in-job", hidden=True, help="executor slurm: the job that ends the run."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Normalise, clean, filter, redact PII, deduplicate, decontaminate and split raw data."""
    from tunewright.curate.config import CurateConfig
    from tunewright.curate.stage import run_curate

    ws = workspace_path(workspace)
    options = {
        "workers": workers,
        "executor": executor,
        "scale.ray_address": ray_address,
        "scale.world_size": world_size,
    }
    extra = [f"{key}={value}" for key, value in options.items() if value]
    path = config_path(ws, config, "curate.yaml")
    cfg = load_config(path, CurateConfig, [*(overrides or []), *extra])
    if cfg.executor == "slurm" and not in_job:
        submit_slurm(ws, cfg, path.resolve(), [*(overrides or []), *extra], dry_run)
        return
    if dry_run:
        raise UserError("--dry-run prints the Slurm scripts of executor slurm; this run's executor is " + cfg.executor)
    report(run_curate(ws, cfg, command_line()), cfg.output.data_card)


def submit_slurm(ws: Path, cfg: CurateConfig, config: Path, overrides: list[str], dry_run: bool) -> None:
    """Plan a sharded curation and submit its stages as chained Slurm job arrays (or print them)."""
    from tunewright.core.runs import start_run
    from tunewright.curate.shards.slurm import LOGS, plan_jobs, save_jobs, scripts
    from tunewright.runtimes.slurm import submit

    if dry_run:
        texts = scripts(cfg, ws, plan_jobs(cfg, ws, None), config, overrides)
        typer.echo("\n".join(texts), nl=False)
        return
    record = {"executor": "slurm", "curate_config": str(config), "overrides": overrides}
    with start_run(ws, "launch", command_line(), record) as run:
        jobs = plan_jobs(cfg, ws, run)
        texts = scripts(cfg, ws, jobs, config, overrides)
        save_jobs(jobs)
        (ws / LOGS).mkdir(parents=True, exist_ok=True)
        submitted, previous = [], None
        for i, text in enumerate(texts):
            script = run.dir / f"curate-{i:02d}.sbatch"
            script.write_text(text, encoding="utf-8")
            previous = submit(script, previous)
            submitted.append({"job_id": previous, "script": f"runs/{run.run_id}/{script.name}"})
        log = str(LOGS / f"tw-curate-finish-{previous}.out")
        run.results.update(job_id=previous, jobs=submitted, work_dir=cfg.scale.work_dir, log=log)
    typer.echo(
        f"submitted {len(submitted)} Slurm jobs (the last, {previous}, records the curate run); run {run.run_id}"
    )
    typer.echo(f"follow it: tunewright launch status {run.run_id} | launch logs {run.run_id}")


def curate_task_cmd(
    job_file: Path = typer.Argument(..., help="A pass's job.pkl in the work folder."),
    stage: str = typer.Argument(..., help="The stage."),
    index: int = typer.Argument(..., help="The task (shard or partition) index."),
) -> None:
    """One task of a sharded curation (what each Slurm array task runs)."""
    from tunewright.curate.shards.job import load_job
    from tunewright.curate.shards.tasks import FUNCTIONS, run_task

    if stage not in FUNCTIONS:
        raise UserError(f"unknown stage {stage!r}; stages: {', '.join(FUNCTIONS)}")
    typer.echo(f"{stage} task {index}: {run_task(load_job(job_file), stage, index)}")


def report(run: Run, data_card: str) -> None:
    """What the curation kept, as the CLI prints it."""
    parts = []
    for label, summary in (("conversations", run.results), ("preference pairs", run.results.get("preference_pairs"))):
        if summary and "splits" in summary:
            sizes = ", ".join(f"{k} {n}" for k, n in summary["splits"].items())
            parts.append(f"{summary['lines_read']} lines of {label}: {sizes}; {summary['quarantined']} quarantined")
    typer.echo(f"curated {'; '.join(parts)}. Run {run.run_id}; data card {data_card}")
