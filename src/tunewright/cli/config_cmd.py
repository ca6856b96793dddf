"""`tunewright config show STAGE`: the resolved config of a stage, every key described.

It resolves exactly as the stage's own command does (code defaults < YAML < overrides),
from the workspace's `configs/<stage>.yaml`, `-c FILE`, or, where neither exists, the
example config `init` would write.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
import yaml

from tunewright.cli.common import OVERRIDES, WORKSPACE, config_path, workspace_path
from tunewright.core.config import apply_overrides, load_config, validate
from tunewright.core.config_doc import describe_config
from tunewright.core.errors import UserError
from tunewright.core.workspace import example_config

# stage -> (default config file, module, config class)
STAGES = {
    "curate": ("curate.yaml", "tunewright.curate.config", "CurateConfig"),
    "train": ("sft-lora.yaml", "tunewright.train.config", "TrainConfig"),
    "eval": ("eval.yaml", "tunewright.evaluate.config", "EvalConfig"),
    "serve": ("serve.yaml", "tunewright.serve.config", "ServeConfig"),
    "monitor": ("monitor.yaml", "tunewright.monitor.config", "MonitorConfig"),
    "pipeline": ("pipeline.yaml", "tunewright.cli.pipeline", "PipelineConfig"),
}

config_app = typer.Typer(help="Discover the config keys of each stage.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


@config_app.command("show")
def show_cmd(
    stage: str = typer.Argument(..., help=f"One of: {', '.join(STAGES)}."),
    config: Path = typer.Option(None, "--config", "-c", help="Config file (default: configs/<stage file>)."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Print the stage's resolved config as YAML, with defaults and a description of every key."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}; expected one of: {', '.join(STAGES)}")
    name, module, cls_name = STAGES[stage]
    model = getattr(importlib.import_module(module), cls_name)
    ws = workspace_path(workspace)
    path = config_path(ws, config, name)
    if config is None and not path.is_file():
        data = apply_overrides(yaml.safe_load(example_config(name)), overrides or [])
        cfg, origin = validate(data, model, f"example configs/{name}"), f"the example configs/{name}"
    else:
        cfg, origin = load_config(path, model, overrides), str(path)
    typer.echo(f"# tunewright {stage}: resolved from {origin} (code defaults < YAML < overrides)")
    typer.echo(describe_config(cfg), nl=False)
