"""`tunewright pipeline -c configs/pipeline.yaml`: the loop's stages in order, each skipped when it is up to date.

Each stage is the CLI verb it names (`curate`, `train`, `eval`, `export`, `card`, `monitor`), run as a
child process with its config, options and overrides, and recorded as that verb always records it.
A stage's key (`core/completions.py`) digests the verb, its options and overrides, its config file's
bytes, the code version and what the stages before it produced (their outputs' digests); a stage
whose key has a completion record whose run's inputs and outputs still hash as recorded is skipped.
So a changed setting reruns its stage and the stages after it (when its outputs change), and an
edited raw file reruns curation and what follows. `--force` runs every stage; `--from STAGE` runs
that stage and the ones after it, and needs the ones before it to be up to date. The pipeline is
itself a `pipeline` run whose parents are its stages' runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import typer
from pydantic import Field

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import StrictModel, load_config
from tunewright.core.errors import EXIT_OK, UserError

# verb -> its default config file (None: the verb takes no config file)
DEFAULT_CONFIG = {
    "curate": "curate.yaml",
    "train": "sft-lora.yaml",
    "eval": "eval.yaml",
    "export": None,
    "card": None,
    "monitor": "monitor.yaml",
}


class StageSpec(StrictModel):
    stage: Literal["curate", "train", "eval", "export", "card", "monitor"]
    """The CLI verb this stage runs."""
    config: str | None = None
    """Its config file (default: the verb's own, e.g. configs/sft-lora.yaml)."""
    args: list[str] = Field(default_factory=list)
    """Options and arguments of the verb, as on its command line (e.g. [--format, gguf])."""
    overrides: list[str] = Field(default_factory=list)
    """key=value overrides of its config."""


class PipelineConfig(StrictModel):
    stages: list[StageSpec] = Field(min_length=1)
    """The stages, in the order they run."""


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_cmd)


def pipeline_cmd(
    config: Path = config_option("pipeline.yaml"),
    start: str = typer.Option(None, "--from", help="Run this stage and the ones after it, whatever their state."),
    force: bool = typer.Option(False, "--force", help="Run every stage, whatever its state."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Run the stages of configs/pipeline.yaml in order, skipping those whose inputs and config are unchanged."""
    from tunewright.core.runs import start_run

    ws = workspace_path(workspace)
    cfg = load_config(config_path(ws, config, "pipeline.yaml"), PipelineConfig, overrides)
    names = [s.stage for s in cfg.stages]
    if start is not None and start not in names:
        raise UserError(f"--from {start!r}: the pipeline's stages are {names}")
    first_forced = names.index(start) if start is not None else (0 if force else len(names))
    from tunewright.core.completions import code_version

    outcome, upstream, code = [], [], code_version()
    for i, spec in enumerate(cfg.stages):
        key = _key(ws, spec, code, upstream)
        label = f"stage {i + 1}/{len(names)} {spec.stage}"
        reused = None if i >= first_forced else _reusable(ws, key)
        if reused is None and start is not None and i < first_forced:
            raise UserError(f"--from {start}: {spec.stage} before it is not up to date; run without --from")
        if reused is not None:
            typer.echo(f"{label}: up to date (run {reused}), skipped", err=True)
            run_id = reused
        else:
            typer.echo(f"{label}: running", err=True)
            run_id = _run_stage(ws, spec)
            _remember(ws, key, spec, run_id)
        outcome.append({"stage": spec.stage, "run_id": run_id, "ran": reused is None, "key": key})
        upstream.append(_outputs(ws, run_id))
    with start_run(ws, "pipeline", command_line(), cfg.model_dump()) as run:
        for step in outcome:
            run.add_parent(step["run_id"])
        run.results["stages"] = outcome
    ran = sum(s["ran"] for s in outcome)
    typer.echo(f"pipeline done: {ran} stage(s) ran, {len(outcome) - ran} up to date. Run {run.run_id}")


def _config_file(ws: Path, spec: StageSpec) -> Path | None:
    if spec.config is not None:
        return config_path(ws, Path(spec.config), spec.config)
    default = DEFAULT_CONFIG[spec.stage]
    return ws / "configs" / default if default else None


def _key(ws: Path, spec: StageSpec, code: str, upstream: list[str]) -> str:
    from tunewright.core.completions import file_digest, work_key

    config = _config_file(ws, spec)
    config_digest = file_digest(config) if config is not None else None
    return work_key(spec.model_dump(), config_digest, code, upstream)


def _reusable(ws: Path, key: str) -> str | None:
    """The run that completed this key, if it is still valid."""
    from tunewright.core.completions import find, stale

    done = find(ws, key)
    if done is None or stale(ws, done["run_id"]) is not None:
        return None
    return done["run_id"]


def _run_stage(ws: Path, spec: StageSpec) -> str:
    """Run the stage's verb in a process of its own (its memory goes back when it ends); the id of the run it
    recorded. A failing stage stops the pipeline with its exit status."""
    from tunewright.core.manifest import list_manifests, run_order

    before = {m["run_id"] for m in list_manifests(ws) if m.get("stage") == spec.stage}
    argv = [spec.stage, "-w", str(ws), *(["-c", spec.config] if spec.config else []), *spec.args, *spec.overrides]
    code = subprocess.run([sys.executable, "-m", "tunewright", *argv], check=False).returncode
    if code != EXIT_OK:
        typer.echo(f"stage {spec.stage} failed (exit {code}); the stages before it are recorded as done", err=True)
        raise typer.Exit(code)
    made = [m for m in list_manifests(ws) if m.get("stage") == spec.stage and m["run_id"] not in before]
    if not made:
        raise UserError(f"stage {spec.stage} recorded no run")
    return max(made, key=run_order)["run_id"]


def _remember(ws: Path, key: str, spec: StageSpec, run_id: str) -> None:
    from tunewright.core.completions import record

    record(ws, key, {"stage": spec.stage, "run_id": run_id})


def _outputs(ws: Path, run_id: str) -> str:
    from tunewright.core.completions import manifest_of, outputs_digest

    return outputs_digest(manifest_of(ws, run_id))
