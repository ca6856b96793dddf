"""`tunewright serve MODEL`: an OpenAI-compatible API for an export, a training run or a model directory.

The tunewright engine serves in this process (continuous batching, multi-LoRA, metrics);
`--engine vllm` hands the same model, adapters and names to vLLM in its own environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tunewright.cli.common import OVERRIDES, WORKSPACE, config_option, config_path, workspace_path
from tunewright.core.config import load_config
from tunewright.core.errors import UserError
from tunewright.core.export_versions import export_name

if TYPE_CHECKING:
    from tunewright.core.model_source import ModelSource
    from tunewright.serve.config import ServeConfig


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)


def serve_cmd(
    model: str = typer.Argument(..., help="Export directory, training run, or model directory."),
    config: Path = config_option("serve.yaml"),
    host: str = typer.Option(None, "--host", help="Bind address (default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", "-p", help="Port (default 8000; 0 picks a free one)."),
    adapter: list[str] = typer.Option(
        None, "--adapter", help="A LoRA adapter to serve too, as NAME=PATH (repeatable)."
    ),
    adapters_dir: Path = typer.Option(None, "--adapters-dir", help="A directory of adapters, one per subdirectory."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    engine: str = typer.Option(None, "--engine", help="tunewright (default) | vllm"),
    workspace: Path = WORKSPACE,
    overrides: list[str] = OVERRIDES,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models, health and /metrics until interrupted."""
    from tunewright.core.model_source import resolve_model
    from tunewright.core.workspace import resolve
    from tunewright.serve.app import free_port
    from tunewright.serve.config import ServeConfig

    ws = workspace_path(workspace)
    flags = [f"host={host}"] if host else []
    flags += [f"port={port}"] if port is not None else []
    flags += [f"engine={engine}"] if engine else []
    flags += [f"api_key_env={api_key_env}"] if api_key_env else []
    flags += [f"adapters_dir={adapters_dir}"] if adapters_dir else []
    for spec in adapter or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--adapter {spec!r}: expected NAME=PATH")
        flags.append(f"adapters.{name}={path}")
    path = config_path(ws, config, "serve.yaml")
    cfg = load_config(path if config or path.is_file() else None, ServeConfig, [*(overrides or []), *flags])
    adapters = {name: str(resolve(ws, p)) for name, p in cfg.adapters.items()}
    for name, where in adapters.items():
        if not (Path(where) / "adapter_config.json").is_file():
            raise UserError(f"adapter {name!r}: no PEFT adapter at {where} (adapter_config.json)")
    if cfg.adapters_dir:
        cfg.adapters_dir = str(resolve(ws, cfg.adapters_dir))
    api_key = None
    if cfg.api_key_env:
        api_key = os.environ.get(cfg.api_key_env)
        if not api_key:
            raise UserError(f"api_key_env: the environment variable {cfg.api_key_env} is not set")
    source = resolve_model(ws, model)
    name = cfg.model_name or export_name(Path(model))
    port = cfg.port or free_port(cfg.host)
    if cfg.engine == "vllm":
        from tunewright.serve.vllm import run_vllm, vllm_command, vllm_python

        cmd = vllm_command(cfg, vllm_python(cfg), source, name, adapters, port, cfg.api_key_env)
        typer.echo(f"starting vLLM for {name} on http://{cfg.host}:{port}/v1", err=True)
        raise typer.Exit(run_vllm(cmd, cfg.host, port, api_key))
    _serve_here(cfg, source, name, adapters, port, api_key)


def _serve_here(
    cfg: ServeConfig, source: ModelSource, name: str, adapters: dict[str, str], port: int, api_key: str | None
) -> None:
    import uvicorn

    from tunewright.engine import Engine, EngineConfig
    from tunewright.engine.lora import adapter_name_for
    from tunewright.serve.app import create_app
    from tunewright.serve.service import Served

    def load() -> tuple[Engine, Served]:
        model, tokenizer = source.load_base()
        b = cfg.batching
        context = getattr(model.config, "max_position_embeddings", None) or b.max_model_len
        config = EngineConfig(b.max_num_seqs, min(b.max_model_len, context), b.max_num_batched_tokens, b.max_waiting)
        own = adapter_name_for(source.label)
        served_adapters = {own: source.adapter} if source.adapter is not None else {}
        served_adapters.update({n: Path(p) for n, p in adapters.items()})
        default = own if source.adapter is not None else None
        return Engine(model, tokenizer, config, served_adapters, default), Served(name, source.base)

    app = create_app(load, cfg, api_key)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=cfg.host, port=port, log_level="warning", timeout_graceful_shutdown=int(cfg.shutdown_grace_s)
        )
    )
    app.state.on_load_error = lambda exc: setattr(server, "should_exit", True)
    typer.echo(
        f"serving {name} on http://{cfg.host}:{port}/v1 (loading; ready at /v1/health/ready; Ctrl-C to stop)", err=True
    )
    server.run()
    if app.state.load_error is not None:
        raise app.state.load_error
