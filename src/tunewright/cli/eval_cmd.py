"""`tunewright eval`: score a model (and a baseline) against the config's suite and gates.

Exit 0 when the verdict is GO, 1 when it is NO-GO or INCONCLUSIVE, 2 on a usage error
(found before any generation). `tunewright eval export-review RUN` and `import-review`
handle blind human review of an eval run's answers; they are dispatched from here because
`eval`'s own positional arguments are config overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.manifest import failing_gates
from tunewright.core.runs import Run

REVIEW_VERBS = ("export-review", "import-review")


def register(app: typer.Typer) -> None:
    app.command("eval", context_settings={"allow_interspersed_args": False})(eval_cmd)


def eval_cmd(
    config: Path = config_option("eval.yaml"),
    model: str = typer.Option(None, "--model", "-m", help="Training run, export, model directory or hub id."),
    baseline: str = typer.Option(None, "--baseline", "-b", help="Model to compare with; 'base' = the model's base."),
    endpoint: str = typer.Option(None, "--endpoint", help="Evaluate an OpenAI-compatible server (…/v1) instead."),
    endpoint_model: str = typer.Option(None, "--endpoint-model", help="The model name to ask --endpoint for."),
    baseline_endpoint: str = typer.Option(None, "--baseline-endpoint", help="A server (…/v1) as the baseline."),
    baseline_endpoint_model: str = typer.Option(None, "--baseline-endpoint-model", help="Its model name."),
    replay: str = typer.Option(
        None, "--replay", help="Replay a capture window's production prompts (its run id, or latest) as the suite."
    ),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Evaluate a model (and a baseline) on the suite; decide the gates: GO (exit 0), NO-GO or INCONCLUSIVE (1).

    Also: `tunewright eval export-review RUN` and `tunewright eval import-review RUN FILE` (see --help of each).
    """
    if overrides and overrides[0] in REVIEW_VERBS:
        from tunewright.cli.review import review_app

        review_app(args=list(overrides), prog_name="tunewright eval", standalone_mode=False)
        return
    misplaced = [o for o in overrides or [] if o.startswith("-")]
    if misplaced:
        raise UserError(f"options go before the key=value overrides: move {' '.join(misplaced)} before them")
    from tunewright.evaluate.config import EvalConfig
    from tunewright.evaluate.stage import TargetSpec, evaluate

    ws = workspace_path(workspace)
    cfg = load_config(config_path(ws, config, "eval.yaml"), EvalConfig, overrides)
    target = TargetSpec(model if model or endpoint else "latest:train", endpoint, endpoint_model)
    other = None
    if baseline or baseline_endpoint:
        other = TargetSpec(baseline, baseline_endpoint, baseline_endpoint_model)
    replayed = None
    if replay:
        from tunewright.evaluate.replay import prepare_replay

        window, production, cfg, items = prepare_replay(ws, cfg, replay)
        other = other or TargetSpec(production, None, None)
        replayed = {"window": window, "production": production, "items": items}
    run, summary = evaluate(ws, cfg, target, other, command_line(), replayed)
    report(run, summary, cfg.report)


def report(run: Run, summary: dict[str, Any], report_path: str) -> None:
    """The gates and the verdict, as the CLI prints them; a verdict other than GO is a CheckFailed (exit 1)."""
    for g in summary["gates"]:
        typer.echo(f"{g['status']:<12} {g['tier']:<10} {g['metric']} {g['rule']} (model {g['model']['value']:.3f})")
    typer.echo(f"verdict {summary['verdict']}; config sha256 {summary['config_hash'][:16]}…")
    typer.echo(f"report {report_path}; results runs/{run.run_id}/results.jsonl")
    if summary["verdict"] != "GO":
        raise CheckFailed(f"verdict {summary['verdict']}: {failing_gates(summary['gates'])}")
