"""`tunewright serve EXPORT`: an OpenAI-compatible API for an export or a training run."""

from __future__ import annotations

from pathlib import Path

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, config_option, config_path, workspace_path
from tunewright.core.config import load_config


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)


def serve_cmd(
    model: str = typer.Argument(..., help="Export directory, training run, or model directory."),
    config: Path = config_option("serve.yaml"),
    host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", "-p", help="Port (default 8000; 0 picks a free one)."),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Serve /v1/chat/completions and /v1/models (OpenAI-compatible) until interrupted."""
    import uvicorn

    from tunewright.core.model_source import resolve_model
    from tunewright.serve.app import create_app, free_port
    from tunewright.serve.config import ServeConfig
    from tunewright.serve.engine import Engine

    ws = workspace_path(workspace)
    flags = [f"host={host}"] if host else []
    flags += [f"port={port}"] if port is not None else []
    path = config_path(ws, config, "serve.yaml")
    cfg = load_config(path if config or path.is_file() else None, ServeConfig, [*(overrides or []), *flags])
    source = resolve_model(ws, model)
    name = cfg.model_name or Path(model).name
    app = create_app(Engine(source), name, cfg.max_new_tokens)
    port = cfg.port or free_port(cfg.host)
    typer.echo(f"serving {name} on http://{cfg.host}:{port}/v1 (Ctrl-C to stop)")
    uvicorn.run(app, host=cfg.host, port=port, log_level="warning")
