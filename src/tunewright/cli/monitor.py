"""`tunewright monitor`: what production asked and answered, per served version; `monitor check` exits 1 on a
breach (for cron or CI); `monitor export WINDOW` turns a capture window's conversations chosen by feedback into a
curation source. `check` and `export` are dispatched from here because the verb's positional arguments are config
overrides."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, command_line, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import CheckFailed, UserError


def register(app: typer.Typer) -> None:
    app.command("monitor", context_settings={"allow_interspersed_args": False})(monitor_cmd)


def monitor_cmd(
    config: Path = config_option("monitor.yaml"),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Report traffic, latency, quality, feedback and drift of what `serve` captured, per served version, and
    write Prometheus alerting rules. `tunewright monitor check` does the same and exits 1 on any breach."""
    args = list(overrides or [])
    if args and args[0] == "export":
        export = typer.main.get_command(export_app)
        export.main(args=args[1:], prog_name="tunewright monitor export", standalone_mode=False, obj=workspace)
        return
    check = bool(args) and args[0] == "check"
    args = args[1:] if check else args
    misplaced = [o for o in args if o.startswith("-")]
    if misplaced:
        raise UserError(f"options go before the key=value overrides: move {' '.join(misplaced)} before them")
    from tunewright.monitor.config import MonitorConfig
    from tunewright.monitor.stage import monitor

    ws = workspace_path(workspace)
    path = config_path(ws, config, "monitor.yaml")
    cfg = load_config(path if config or path.is_file() else None, MonitorConfig, args)
    run, summary = monitor(ws, cfg, command_line())
    for v in summary["versions"]:
        last = v["windows"][-1]["stats"]
        drift = v["input_drift"]["training"]
        said = f"p = {drift['p_value']:.3g}" if drift.get("tested") else "not tested"
        typer.echo(
            f"{v['model']} ({v['version']}): {sum(w['stats']['requests'] for w in v['windows'])} requests in "
            f"{len(v['windows'])} windows; latest: error rate {last['error_rate']:.1%}, "
            f"feedback {last['feedback']}; input drift vs training {said}"
        )
    for b in summary["breaches"]:
        typer.echo(f"BREACH {b['message']}")
    report = Path(cfg.report)
    typer.echo(f"report {report} and {report.with_suffix('.html')}; alert rules {cfg.alert_rules}; run {run.run_id}")
    if check and summary["breaches"]:
        raise CheckFailed(f"{len(summary['breaches'])} breach(es)")


def _store(ws: Path) -> str:
    """The capture store the workspace's monitor config names (its default where it has none)."""
    from tunewright.core.config import workspace_config
    from tunewright.monitor.config import MonitorConfig

    return workspace_config(ws, "monitor.yaml", MonitorConfig).store


export_app = typer.Typer(add_completion=False)


@export_app.command()
def export_cmd(
    ctx: typer.Context,
    window: str = typer.Argument(..., help="A capture window (its capture run id), or latest."),
    kind: str = typer.Option("chat", "--kind", help="chat (conversations) | preference (corrected answers as pairs)."),
    min_score: float = typer.Option(1.0, "--min-score", help="Feedback score that makes a conversation a good one."),
    out: str = typer.Option(None, "--out", help="File to write (default data/raw/production-WINDOW-KIND.jsonl)."),
    store: str = typer.Option(None, "--store", help="The capture store (default: monitor.yaml's store)."),
    judged_by: str = typer.Option(
        None, "--judged-by", help="A replay of the window with a judge: also export answers it scored well (chat)."
    ),
    min_judge_score: float = typer.Option(4.0, "--min-judge-score", help="Judge score (1-5) that makes one good."),
    workspace: Path = typer.Option(None, "--workspace", "-w", help="Workspace (default: the current directory)."),
) -> None:
    """Write a capture window's conversations chosen by feedback, judge score or correction as a curation source
    (a `monitor-export` run)."""
    from tunewright.core.workspace import resolve
    from tunewright.monitor.export import export_window

    if kind not in ("chat", "preference"):
        raise UserError(f"--kind {kind!r}: expected chat or preference")
    ws = workspace_path(workspace or ctx.obj)
    run = export_window(
        ws, resolve(ws, store or _store(ws)), window, kind, min_score, out, command_line(), judged_by, min_judge_score
    )
    r = run.results
    typer.echo(
        f"exported {r['exported']} of {r['captured']} captured conversations of window {r['window']} as {r['kind']}"
    )
    typer.echo(f"-> {r['out']}; run {run.run_id}. To train on it, list it in configs/curate.yaml with a usage_note")
