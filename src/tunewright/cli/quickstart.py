"""`tunewright quickstart`: the whole loop on the embedded default, in a fresh workspace.

It runs the same verbs a user would type (init, curate, train, eval, export, promote, card, serve), so
the workspace it leaves behind has the same runs, manifests and reports, then asks the
served model one question through the OpenAI-compatible API.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import typer

from tunewright.core.errors import EXIT_OK


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)


QUESTION = "The nightly job for finance.invoices failed. What should I do?"


def ask(base_url: str, model: str, question: str) -> str:
    """One chat completion over HTTP, as any OpenAI client would send it."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0})
    req = urllib.request.Request(
        f"{base_url}/chat/completions", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["choices"][0]["message"]["content"]


def quickstart_cmd(
    workspace: Path = typer.Option(Path("tunewright-quickstart"), "--workspace", "-w", help="Workspace to create."),
    with_dpo: bool = typer.Option(
        False, "--with-dpo", help="Then DPO on the curated preference pairs, evaluated against the SFT model."
    ),
) -> None:
    """Init, curate, train (LoRA), eval vs base, export (merged), promote to production, write the model card
    and release notes, serve, ask one question. With --with-dpo, DPO continues the SFT run and is evaluated
    on the SFT gates (against base) and on held-out preference pairs (against the SFT model)."""
    from tunewright.cli.main import main
    from tunewright.core.model_source import resolve_model
    from tunewright.core.progress import console
    from tunewright.core.runs import find_run
    from tunewright.engine import Engine
    from tunewright.serve.app import BackgroundServer, create_app
    from tunewright.serve.service import Served

    ws = workspace.resolve()
    export_name = "support-assistant"
    steps = [
        ["init", str(ws), "--sample"],
        ["curate", "-w", str(ws)],
        ["train", "-w", str(ws)],
        ["eval", "-w", str(ws), "--model", "latest:train", "--baseline", "base"],
        ["export", "latest:train", "--format", "merged", "--name", export_name, "-w", str(ws)],
        ["promote", export_name, "--to", "production", "--reason", "quickstart", "-w", str(ws)],
        ["card", f"{export_name}@production", "-w", str(ws)],
    ]
    total = len(steps) + 1 + (3 if with_dpo else 0)

    def run(argv: list[str], number: int) -> None:
        console.rule(f"[bold]{number}/{total}  tunewright {' '.join(a for a in argv if a not in (str(ws), '-w'))}")
        code = main(argv)
        if code != EXIT_OK:
            raise typer.Exit(code)

    for i, argv in enumerate(steps, start=1):
        run(argv, i)
    if with_dpo:
        sft = find_run(ws, "latest:train").name
        dpo_steps = [
            ["train", "-w", str(ws), "-c", "configs/dpo-lora.yaml", f"model.init_from={sft}"],
            ["eval", "-w", str(ws), "--model", "latest:train", "--baseline", "base", "report=reports/eval-dpo.md"],
            [
                "eval",
                "-w",
                str(ws),
                "-c",
                "configs/eval-preferences.yaml",
                "--model",
                "latest:train",
                "--baseline",
                sft,
            ],
        ]
        for i, argv in enumerate(dpo_steps, start=len(steps) + 1):
            run(argv, i)
    console.rule(f"[bold]{total}/{total}  tunewright serve {export_name}@production")
    source = resolve_model(ws, f"{export_name}@production")
    app = create_app(lambda: (Engine.from_source(source), Served(export_name, source.base)))
    with BackgroundServer(app) as server:
        answer = ask(server.base_url, export_name, QUESTION)
        url = server.base_url
    typer.echo("")
    typer.echo(f"data card:   {ws / 'reports/data-card.md'}")
    typer.echo(f"eval report: {ws / 'reports/eval-report.md'}")
    typer.echo(f"model card:  {ws / 'reports/model-card.md'}")
    typer.echo(f"release notes: {ws / 'reports/release-notes.md'}")
    if with_dpo:
        typer.echo(f"DPO evals:   {ws / 'reports/eval-dpo.md'} (SFT gates), {ws / 'reports/eval-preferences.md'}")
    typer.echo(f"export:      {source.base} ({export_name}@production)")
    typer.echo(f"served at {url} (stopped); asked: {QUESTION}")
    typer.echo(answer)
    typer.echo(f"\nServe it yourself: tunewright serve {export_name}@production -w {ws}")
