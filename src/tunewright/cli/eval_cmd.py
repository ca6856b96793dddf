"""`tunewright eval`: score a model against the config's tasks and gates (exit 1 on a failed gate)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import CheckFailed
from tunewright.core.runs import start_run


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    config: Path = config_option("eval.yaml"),
    model: str = typer.Option("latest:train", "--model", "-m", help="Training run, model directory or hub id."),
    baseline: str = typer.Option(None, "--baseline", "-b", help="Model to compare with; 'base' = the model's base."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Evaluate a model (and a baseline) on golden prompts and tasks; check the gates."""
    from tunewright.evaluate.config import EvalConfig
    from tunewright.evaluate.stage import run_eval

    ws = workspace_path(workspace)
    cfg = load_config(config_path(ws, config, "eval.yaml"), EvalConfig, overrides)
    with start_run(ws, "eval", command_line(), cfg.model_dump()) as run:
        tuned, base = run_eval(cfg, ws, model, baseline, run)
    for res in filter(None, (base, tuned)):
        gates = ", ".join(f"{g.metric}={g.value:.3f} {'ok' if g.passed else 'FAIL'}" for g in res.gates)
        typer.echo(f"{res.source.label}: {'PASS' if res.passed else 'FAIL'} ({gates})")
    typer.echo(f"report {cfg.report}; run {run.run_id}")
    if not tuned.passed:
        failed = [g.metric for g in tuned.gates if not g.passed]
        raise CheckFailed(f"{tuned.source.label} failed gate(s): {', '.join(failed)}")
