"""`tunewright train`: fine-tune a model on the curated splits (LoRA / DoRA SFT)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.runs import start_run


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def train_cmd(
    config: Path = config_option("sft-lora.yaml"),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Train a LoRA/DoRA adapter with assistant-only loss; writes runs/<id>/adapter."""
    from tunewright.train.config import TrainConfig
    from tunewright.train.recipes.sft import run_sft

    ws = workspace_path(workspace)
    cfg = load_config(config_path(ws, config, "sft-lora.yaml"), TrainConfig, overrides)
    with start_run(ws, "train", command_line(), cfg.model_dump(by_alias=True), seed=cfg.training.seed) as run:
        summary = run_sft(cfg, ws, run)
    val = summary.get("final_val_loss")
    typer.echo(
        f"trained {summary['steps']} steps on {summary['train_examples']} examples; "
        f"train loss {summary['final_train_loss']:.4f}"
        + (f", validation loss {summary['initial_val_loss']:.4f} -> {val:.4f}" if val is not None else "")
        + f". Run {run.run_id}; adapter runs/{run.run_id}/adapter"
    )
