"""`tunewright export RUN`: merged model or adapter, checked against golden prompts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tunewright.cli.common import WORKSPACE, command_line, workspace_path

if TYPE_CHECKING:
    from tunewright.core.runs import Run
    from tunewright.export.config import ExportConfig
    from tunewright.export.parity import ParityResult


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    run_ref: str = typer.Argument("latest:train", help="Training run id or path (default: the latest)."),
    fmt: str = typer.Option("merged", "--format", "-f", help="merged | adapter | gguf"),
    name: str = typer.Option(
        None, "--name", "-n", help="Export name: a new version goes to exports/<name>/v<N> (default: <run>-<format>)."
    ),
    golden: Path = typer.Option(
        Path("data/raw/eval/golden.jsonl"), "--golden", help="Golden prompts re-run on the export."
    ),
    allow_failed_eval: bool = typer.Option(
        False, "--allow-failed-eval", help="Export even though the run's latest eval failed a gate (recorded)."
    ),
    max_shard_size: str = typer.Option("5GB", "--max-shard-size", help="Merged: safetensors shards of at most this."),
    gguf_type: str = typer.Option("f16", "--gguf-type", help="GGUF: f16 | q8_0."),
    verify_with: str = typer.Option(
        None, "--verify-with", help="Also answer the golden prompts with vllm (merged/adapter) or llama.cpp (gguf)."
    ),
    workspace: Path = WORKSPACE,
) -> None:
    """Export a trained model; refuses a run whose latest eval failed, and fails (exit 1) on a parity mismatch."""
    from tunewright.export.config import ExportConfig
    from tunewright.export.stage import export_version
    from tunewright.runtimes.vllm import VllmConfig
    from tunewright.serve.config import load_serve_config

    ws = workspace_path(workspace)
    cfg = ExportConfig(
        run=run_ref,
        format=fmt,
        name=name,
        golden=str(golden),
        allow_failed_eval=allow_failed_eval,
        max_shard_size=max_shard_size,
        gguf_type=gguf_type,
        verify_with=verify_with,
        vllm=load_serve_config(ws).vllm if verify_with == "vllm" else VllmConfig(),
    )
    report(*export_version(ws, cfg, command_line()), cfg)


def report(run: Run, parity: ParityResult, out_dir: Path, cfg: ExportConfig) -> None:
    """What the export made and how it was checked, as the CLI prints it."""
    for warning in run.results["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    verdict = run.results["eval"]
    evaluated = "not evaluated"
    if verdict is not None:
        evaluated = f"eval {verdict['run_id']} {'passed' if verdict['passed'] else 'FAILED, allowed'}"
    agreement = run.results["top1_agreement"]
    if agreement is None:
        checked = f"golden prompts identical ({parity.prompts}/{parity.prompts})"
    else:
        checked = f"top-1 agreement with the trained model's answers {agreement:.1%}"
    if cfg.verify_with:
        checked += f", also on {cfg.verify_with}"
    typer.echo(
        f"exported {cfg.format} model to exports/{out_dir.parent.name}/{out_dir.name} ({evaluated}); {checked}. "
        f"Run {run.run_id}"
    )
