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
    from tunewright.serve.canary import CanaryPlan, CanaryPolicy
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
    from tunewright.runtimes.net import free_port
    from tunewright.serve.capture import capture_window, served_lineage
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
    source = cfg.served(resolve_model(ws, model))
    canary = None
    if cfg.canary.candidate is not None:
        from tunewright.serve.canary import plan_canary

        plan, candidate = plan_canary(ws, cfg.canary.candidate, model, source)
        adapters[plan.adapter] = str(candidate)
        cfg.adapters[plan.adapter] = str(candidate)
        canary = (plan, canary_policy(cfg, plan))
    name = cfg.model_name or export_name(Path(model))
    port = cfg.port or free_port(cfg.host)
    versions, parents = served_lineage(ws, name, source, cfg.adapters)
    command = ["tunewright", "serve", model, *(overrides or []), *flags]
    if cfg.engine == "vllm":
        _serve_vllm(ws, cfg, source, name, adapters, port, api_key, (versions, parents, command))
        return
    from tunewright.core.precision import slow_dtype_warning
    from tunewright.serve.app import serve_forever

    slow = slow_dtype_warning(source.dtype, source.device)
    if slow:
        typer.echo(f"warning: serving in {slow}", err=True)
    typer.echo(
        f"serving {name} ({source.dtype}, {source.device}) on http://{cfg.host}:{port}/v1 "
        "(loading; ready at /v1/health/ready; Ctrl-C to stop)",
        err=True,
    )
    with capture_window(ws, cfg.capture, versions, parents, command) as capture:
        if capture is not None:
            typer.echo(f"capturing requests in {ws / cfg.capture.path} (window {capture.window})", err=True)
        serve_forever(cfg, source, name, {n: Path(p) for n, p in adapters.items()}, port, api_key, capture, canary)


def canary_policy(cfg: ServeConfig, plan: CanaryPlan) -> CanaryPolicy:
    """The canary's policy: the monitor's checks on its requests, the registry's moves on its alias."""
    from tunewright.monitor.checks import canary_breaches
    from tunewright.release.promote import PromoteConfig, promote_version, rollback
    from tunewright.serve.canary import CanaryPolicy

    ws = plan.workspace

    def promote(alias: str, reason: str) -> None:
        promote_version(ws, PromoteConfig(ref=plan.label, to=alias, reason=reason))

    return CanaryPolicy(
        breaches=lambda ours, theirs: [c.describe() for c in canary_breaches(ours, theirs, cfg.canary.thresholds)],
        roll_back=lambda reason: rollback(ws, plan.export, plan.alias, reason, plan.production, "canary-rollback"),
        promote=promote,
    )


def _serve_vllm(
    ws: Path,
    cfg: ServeConfig,
    source: ModelSource,
    name: str,
    adapters: dict[str, str],
    port: int,
    api_key: str | None,
    lineage: tuple[dict[str, str], list[str], list[str]],
) -> None:
    """vLLM in the foreground; with capture, on a private port behind the capturing proxy on `port`."""
    from tunewright.runtimes.net import free_port
    from tunewright.runtimes.vllm import VllmLaunch, run_vllm, vllm_command, vllm_python
    from tunewright.serve.capture import capture_window

    vllm = cfg.vllm_settings()
    inner = free_port("127.0.0.1") if cfg.capture.enabled else port
    host = "127.0.0.1" if cfg.capture.enabled else cfg.host
    launch = VllmLaunch(host, inner, cfg.batching.max_model_len, cfg.batching.max_num_seqs)
    cmd = vllm_command(vllm, vllm_python(vllm), source, name, adapters, launch)
    typer.echo(f"starting vLLM for {name} on http://{cfg.host}:{port}/v1", err=True)
    if not cfg.capture.enabled:
        raise typer.Exit(run_vllm(cmd, cfg.host, port, api_key))
    from tunewright.serve.proxy import serve_captured

    served = set(adapters) | ({name} if source.adapter is not None else set())
    with capture_window(ws, cfg.capture, *lineage) as capture:
        assert capture is not None
        typer.echo(f"capturing requests in {ws / cfg.capture.path} (window {capture.window})", err=True)
        code = serve_captured(cmd, inner, cfg, port, api_key, capture, served)
    raise typer.Exit(code)
