"""`tunewright curate`: raw sources -> curated splits, quarantine and data card."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.runs import Run


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_cmd)


def curate_cmd(
    config: Path = config_option("curate.yaml"),
    workers: int = typer.Option(
        None, "--workers", "-j", help="Worker processes for the per-record steps (and MinHash threads)."
    ),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Normalise, clean, filter, redact PII, deduplicate, decontaminate and split raw data."""
    from tunewright.curate.config import CurateConfig
    from tunewright.curate.stage import run_curate

    ws = workspace_path(workspace)
    extra = [f"workers={workers}"] if workers else []
    cfg = load_config(config_path(ws, config, "curate.yaml"), CurateConfig, [*(overrides or []), *extra])
    report(run_curate(ws, cfg, command_line()), cfg.output.data_card)


def report(run: Run, data_card: str) -> None:
    """What the curation kept, as the CLI prints it."""
    parts = []
    for label, summary in (("conversations", run.results), ("preference pairs", run.results.get("preference_pairs"))):
        if summary and "splits" in summary:
            sizes = ", ".join(f"{k} {n}" for k, n in summary["splits"].items())
            parts.append(f"{summary['lines_read']} lines of {label}: {sizes}; {summary['quarantined']} quarantined")
    typer.echo(f"curated {'; '.join(parts)}. Run {run.run_id}; data card {data_card}")
