"""`tunewright train`: SFT or DPO of every weight, a LoRA or a DoRA adapter (chat, completion or pre-training).

Runs the same on one process and under `torchrun --nproc-per-node N -m tunewright train`
(`train/stage.py`): rank 0 records the run and prints the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config

if TYPE_CHECKING:
    from tunewright.train.config import TrainConfig


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def train_cmd(
    config: Path = config_option("sft-lora.yaml"),
    check_data: bool = typer.Option(
        False, "--check-data", help="Print a few tokenised examples with the trained tokens marked, then stop."
    ),
    resume: str = typer.Option(
        None, "--resume", help="Continue from a checkpoint: a step-* directory, a training run id, or 'latest'."
    ),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Fine-tune a model on the curated splits; writes runs/<id>/adapter (or model/) and checkpoints."""
    from tunewright.train.config import TrainConfig
    from tunewright.train.stage import train

    ws = workspace_path(workspace)
    cfg = load_config(config_path(ws, config, "sft-lora.yaml"), TrainConfig, overrides)
    if check_data:
        _check_data(cfg, ws)
        return
    run, summary = train(ws, cfg, command_line(), resume)
    if run is not None:
        report(summary, run.run_id, cfg.adapter)


def _check_data(cfg: TrainConfig, ws: Path) -> None:
    from tunewright.core.model_location import locate_model
    from tunewright.core.workspace import resolve
    from tunewright.train.recipe import load_split, prepare_tokenizer, render_check

    tokenizer = prepare_tokenizer(cfg, locate_model(ws, cfg.model.name_or_path, "model.name_or_path"))
    split = load_split(resolve(ws, cfg.data.train_path), tokenizer, cfg)
    typer.echo(render_check(split, tokenizer, cfg))
    typer.echo("\n--check-data: nothing was trained.")


def report(summary: dict[str, Any], run_id: str, adapter: str) -> None:
    """What the training did, as the CLI prints it."""
    val, first = summary.get("final_val_loss"), summary.get("initial_val_loss")
    out = "model" if adapter == "none" else "adapter"
    typer.echo(
        f"trained {summary['steps']} steps on {summary['train_examples']} examples; "
        f"train loss {summary['final_train_loss']:.4f}"
        + (f", validation loss {first:.4f} -> {val:.4f}" if val is not None and first is not None else "")
        + (" (stopped early)" if summary.get("stopped_early") else "")
        + f". Run {run_id}; {out} runs/{run_id}/{out}"
    )
