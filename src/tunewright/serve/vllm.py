"""`tunewright serve --engine vllm`: the same model, adapters and names, served by vLLM.

vLLM pins its own transformers, so it runs from its own environment: `vllm.python` in the
config or `$TUNEWRIGHT_VLLM` names that environment's Python, and the server is started as
`python -m vllm.entrypoints.openai.api_server` (the `vllm` console script of some builds
cannot read its own package metadata). A training run's adapter is served under the run's
served name with `--enable-lora --lora-modules`, the base under `<name>-base`; the API key
goes through the environment, never the command line. Readiness is vLLM's own `/health`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.serve.config import ServeConfig


def vllm_python(cfg: ServeConfig) -> str:
    """The Python of the vLLM environment, checked to exist."""
    python = cfg.vllm.python or os.environ.get("TUNEWRIGHT_VLLM")
    if not python:
        raise UserError("engine: vllm needs vllm.python in the serve config or $TUNEWRIGHT_VLLM (a Python with vLLM)")
    found = shutil.which(python) or (python if Path(python).is_file() else None)
    if found is None:
        raise UserError(f"vllm.python {python!r} is not an executable")
    return found


def vllm_command(
    cfg: ServeConfig,
    python: str,
    source: ModelSource,
    name: str,
    adapters: dict[str, str],
    port: int,
    api_key_env: str | None,
) -> list[str]:
    """The `vllm serve` command line for `source` served as `name`, with `adapters`."""
    if not Path(source.base).is_dir():
        raise UserError(f"engine: vllm serves a model directory; {source.base} is not one")
    loras = dict(adapters)
    served = name
    if source.adapter is not None:
        loras = {name: str(source.adapter), **loras}
        served = f"{name}-base"
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", source.base, "--served-model-name", served]
    cmd += ["--host", cfg.host, "--port", str(port), "--dtype", cfg.vllm.dtype]
    config = json.loads((Path(source.base) / "config.json").read_text(encoding="utf-8"))
    context = min(cfg.batching.max_model_len, config.get("max_position_embeddings") or cfg.batching.max_model_len)
    cmd += ["--max-model-len", str(context), "--max-num-seqs", str(cfg.batching.max_num_seqs)]
    cmd += ["--tensor-parallel-size", str(cfg.vllm.tensor_parallel_size)]
    if loras:
        rank = max(_rank(Path(p)) for p in loras.values())
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            str(rank),
            "--lora-modules",
            *(f"{n}={p}" for n, p in loras.items()),
        ]
    return cmd + list(cfg.vllm.extra_args)


def _rank(adapter: Path) -> int:
    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    ranks = [config.get("r", 8), *(config.get("rank_pattern") or {}).values()]
    return max(8, *(int(r) for r in ranks))


def run_vllm(cmd: list[str], host: str, port: int, api_key: str | None) -> int:
    """Run vLLM in the foreground until it exits or we are told to stop; says when it is ready."""
    env = dict(os.environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    proc = subprocess.Popen(cmd, env=env)

    def forward(signum: int, frame: object) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if wait_ready(proc, host, port):
            print(f"vLLM is ready on http://{host}:{port}/v1", file=sys.stderr)
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def wait_ready(proc: subprocess.Popen, host: str, port: int, timeout_s: float | None = None) -> bool:
    """Wait until vLLM's /health answers 200; False when the process exits or `timeout_s` passes first."""
    url = f"http://{host}:{port}/health"
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while proc.poll() is None and (deadline is None or time.monotonic() < deadline):
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    return False


def stop_process(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace_s`; reaped either way."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
