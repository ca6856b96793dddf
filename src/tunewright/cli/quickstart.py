"""`tunewright quickstart`: the whole loop on the embedded default, in a fresh workspace.

It calls the library functions the verbs call (init, curate, train, eval, export, promote, card,
serve), with the workspace's own configs, and prints what each verb prints, so the workspace it
leaves behind has the same runs, manifests (each with the command that would repeat it) and
reports; then it serves the promoted version with capture on and asks it, through the
OpenAI-compatible API, one support question, one request it should answer with a tool call, and
one alert to read into JSON under a `json_schema` response format; sends feedback on the first
answer; and writes the monitor report of what was captured.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from tunewright.core.config import M, workspace_config
from tunewright.core.progress import console
from tunewright.demo import domain
from tunewright.demo.sample_data import TOOL_SYSTEM_PROMPT

QUESTION = "The nightly job for finance.invoices failed. What should I do?"
TOOL_REQUEST = "Please file an incident: failed run in `hr.payroll`."
ALERT = domain.EXTRACTION_PROMPT.format(alert="[sandbox.clicks] orchestrator run ended in state failed")
EXTRACTION_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "incident", "schema": domain.EXTRACTION_SCHEMA, "strict": True},
}
REQUESTS: tuple[tuple[str, dict[str, Any]], ...] = (
    (QUESTION, {"messages": [{"role": "user", "content": QUESTION}]}),
    (
        f"{TOOL_REQUEST} (tools: check_freshness, open_incident)",
        {
            "messages": [{"role": "system", "content": TOOL_SYSTEM_PROMPT}, {"role": "user", "content": TOOL_REQUEST}],
            "tools": domain.TOOLS,
        },
    ),
    (
        f"{ALERT} (response_format: json_schema)",
        {"messages": [{"role": "user", "content": ALERT}], "response_format": EXTRACTION_FORMAT},
    ),
)
EXPORT_NAME = "support-assistant"


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)


def ask(base_url: str, model: str, request: dict[str, Any]) -> tuple[str, str]:
    """One greedy chat completion over HTTP, as any OpenAI client would send it: the response id, and the
    answer's text or its tool calls as `name({arguments})` lines."""
    from tunewright.runtimes.openai_client import OpenAIClient

    client = OpenAIClient(base_url, timeout_s=60)
    try:
        response = client.chat({"model": model, "temperature": 0, **request})
    finally:
        client.close()
    message = response["choices"][0]["message"]
    calls = [f"{c['function']['name']}({c['function']['arguments']})" for c in message.get("tool_calls") or []]
    return response["id"], "\n".join(calls) if calls else message["content"]


def send_feedback(base_url: str, response_id: str) -> int:
    """Rate one captured answer through `POST /v1/feedback`; the HTTP status."""
    import httpx

    body = {"id": response_id, "score": 1, "comment": "right first step"}
    return httpx.post(f"{base_url}/feedback", json=body, timeout=30).status_code


class Steps:
    """The verbs of the loop in one workspace: each prints its step header, runs, and prints what its verb prints."""

    def __init__(self, ws: Path, total: int) -> None:
        self.ws, self.total, self.done = ws, total, 0

    def step(self, argv: list[str], body: Callable[[list[str]], None]) -> None:
        """Run one verb; `argv` is the command that repeats it (shown, and recorded in its run's manifest)."""
        self.done += 1
        shown = " ".join(a for a in argv if a not in (str(self.ws), "-w"))
        console.rule(f"[bold]{self.done}/{self.total}  tunewright {shown}")
        body(["tunewright", *argv])

    def init(self) -> None:
        from tunewright.cli.init import init_workspace_dir

        self.step(["init", str(self.ws), "--sample"], lambda _: init_workspace_dir(self.ws, sample=True))

    def curate(self) -> None:
        from tunewright.cli import curate
        from tunewright.curate.config import CurateConfig
        from tunewright.curate.stage import run_curate

        cfg = self._config("curate.yaml", CurateConfig)
        self.step(
            ["curate", "-w", str(self.ws)],
            lambda cmd: curate.report(run_curate(self.ws, cfg, cmd), cfg.output.data_card),
        )

    def train(self, config: str = "sft-lora.yaml", overrides: tuple[str, ...] = ()) -> None:
        from tunewright.cli import train
        from tunewright.train.config import TrainConfig
        from tunewright.train.stage import train as run_train

        cfg = self._config(config, TrainConfig, overrides)
        argv = ["train", "-w", str(self.ws), *(["-c", f"configs/{config}"] if config != "sft-lora.yaml" else [])]

        def body(cmd: list[str]) -> None:
            run, summary = run_train(self.ws, cfg, cmd)
            assert run is not None  # one process: rank 0
            train.report(summary, run.run_id, cfg.adapter)

        self.step([*argv, *overrides], body)

    def eval(self, model: str, baseline: str, config: str = "eval.yaml", overrides: tuple[str, ...] = ()) -> None:
        from tunewright.cli import eval_cmd
        from tunewright.evaluate.config import EvalConfig
        from tunewright.evaluate.stage import TargetSpec, evaluate

        cfg = self._config(config, EvalConfig, overrides)
        argv = ["eval", "-w", str(self.ws), *(["-c", f"configs/{config}"] if config != "eval.yaml" else [])]

        def body(cmd: list[str]) -> None:
            run, summary = evaluate(self.ws, cfg, TargetSpec(model), TargetSpec(baseline), cmd)
            eval_cmd.report(run, summary, cfg.report)

        self.step([*argv, "--model", model, "--baseline", baseline, *overrides], body)

    def export(self) -> None:
        from tunewright.cli import export
        from tunewright.export.config import ExportConfig
        from tunewright.export.stage import export_version

        cfg = ExportConfig(run="latest:train", format="merged", name=EXPORT_NAME)
        argv = ["export", "latest:train", "--format", "merged", "--name", EXPORT_NAME, "-w", str(self.ws)]
        self.step(argv, lambda cmd: export.report(*export_version(self.ws, cfg, cmd), cfg))

    def promote(self) -> None:
        from tunewright.cli import promote
        from tunewright.release.promote import PromoteConfig, promote_version

        cfg = PromoteConfig(ref=EXPORT_NAME, to="production", reason="quickstart")
        argv = ["promote", EXPORT_NAME, "--to", "production", "--reason", "quickstart", "-w", str(self.ws)]
        self.step(argv, lambda _: promote.report(promote_version(self.ws, cfg)))

    def card(self) -> None:
        from tunewright.cli import card
        from tunewright.release.paper_trail import write_card

        ref = f"{EXPORT_NAME}@production"
        self.step(["card", ref, "-w", str(self.ws)], lambda cmd: card.report(self.ws, *write_card(self.ws, ref, cmd)))

    def monitor(self) -> None:
        from tunewright.monitor.config import MonitorConfig
        from tunewright.monitor.stage import monitor

        def body(cmd: list[str]) -> None:
            run, summary = monitor(self.ws, self._config("monitor.yaml", MonitorConfig), cmd)
            requests = summary["requests"]
            typer.echo(f"{requests} captured requests; {len(summary['breaches'])} breaches; run {run.run_id}")

        self.step(["monitor", "-w", str(self.ws)], body)

    def _config(self, name: str, model: type[M], overrides: tuple[str, ...] = ()) -> M:
        return workspace_config(self.ws, name, model, list(overrides))


def serve_and_ask(ws: Path) -> tuple[str, str, list[str], int]:
    """Serve `support-assistant@production` as `tunewright serve ... capture.enabled=true` would (the workspace's
    serve config), send it the `REQUESTS` and feedback on the first answer, stop; the export's directory, the
    server's URL, the answers and the feedback's HTTP status."""
    from tunewright.core.model_source import resolve_model
    from tunewright.engine import Engine
    from tunewright.serve.app import BackgroundServer, create_app
    from tunewright.serve.capture import capture_window, served_lineage
    from tunewright.serve.config import load_serve_config
    from tunewright.serve.service import Served

    cfg = load_serve_config(ws)
    cfg.capture.enabled = True
    ref = f"{EXPORT_NAME}@production"
    source = cfg.served(resolve_model(ws, ref))
    versions, parents = served_lineage(ws, EXPORT_NAME, source, cfg.adapters)
    command = ["tunewright", "serve", ref, "-w", str(ws), "capture.enabled=true"]

    def load() -> tuple[Engine, Served]:
        return Engine.from_source(source, cfg.engine_config()), Served(EXPORT_NAME, source.base)

    with (
        capture_window(ws, cfg.capture, versions, parents, command) as capture,
        BackgroundServer(create_app(load, cfg, capture=capture)) as server,
    ):
        replies = [ask(server.base_url, EXPORT_NAME, r) for _, r in REQUESTS]
        status = send_feedback(server.base_url, replies[0][0])
    return source.base, server.base_url, [text for _, text in replies], status


def quickstart_cmd(
    workspace: Path = typer.Option(Path("tunewright-quickstart"), "--workspace", "-w", help="Workspace to create."),
    with_dpo: bool = typer.Option(
        False, "--with-dpo", help="Then DPO on the curated preference pairs, evaluated against the SFT model."
    ),
) -> None:
    """Init, curate, train (LoRA), eval vs base, export (merged), promote to production, write the model card
    and release notes, serve with capture on, ask three requests, send feedback, write the monitor report. With
    --with-dpo, DPO continues the SFT run and is evaluated
    on the SFT gates (against base) and on held-out preference pairs (against the SFT model)."""
    from tunewright.core.runs import find_run

    ws = workspace.resolve()
    steps = Steps(ws, 9 + (3 if with_dpo else 0))
    steps.init()
    steps.curate()
    steps.train()
    steps.eval("latest:train", "base")
    steps.export()
    steps.promote()
    steps.card()
    if with_dpo:
        sft = find_run(ws, "latest:train").name
        steps.train("dpo-lora.yaml", (f"model.init_from={sft}",))
        steps.eval("latest:train", "base", overrides=("report=reports/eval-dpo.md",))
        steps.eval("latest:train", sft, config="eval-preferences.yaml")
    steps.done += 1
    console.rule(f"[bold]{steps.done}/{steps.total}  tunewright serve {EXPORT_NAME}@production capture.enabled=true")
    export_dir, url, answers, feedback = serve_and_ask(ws)
    typer.echo(f"captured the requests below in {ws / 'monitor/capture.sqlite'}; feedback on the first: {feedback}")
    steps.monitor()
    typer.echo("")
    typer.echo(f"data card:   {ws / 'reports/data-card.md'}")
    typer.echo(f"eval report: {ws / 'reports/eval-report.md'}")
    typer.echo(f"model card:  {ws / 'reports/model-card.md'}")
    typer.echo(f"release notes: {ws / 'reports/release-notes.md'}")
    if with_dpo:
        typer.echo(f"DPO evals:   {ws / 'reports/eval-dpo.md'} (SFT gates), {ws / 'reports/eval-preferences.md'}")
    typer.echo(f"export:      {export_dir} ({EXPORT_NAME}@production)")
    typer.echo(f"monitor:     {ws / 'reports/monitor-report.md'} (and .html; alert rules reports/monitor-alerts.yml)")
    typer.echo(f"served at {url} (stopped)")
    for (asked, _), answer in zip(REQUESTS, answers, strict=True):
        typer.echo(f"\nasked: {asked}\n{answer}")
    typer.echo(f"\nServe it yourself: tunewright serve {EXPORT_NAME}@production -w {ws}")
