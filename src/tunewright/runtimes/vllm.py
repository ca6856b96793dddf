"""vLLM as a child process: the same model, adapters and names, served by vLLM's OpenAI API.

vLLM pins its own transformers, so it runs from its own environment: `python` in its
settings (`vllm:` in `configs/serve.yaml`) or `$TUNEWRIGHT_VLLM` names that environment's
Python, and the server is started as `python -m vllm.entrypoints.openai.api_server` (the
`vllm` console script of some builds cannot read its own package metadata). A training
run's adapter is served under the run's served name with `--enable-lora --lora-modules`,
the base under `<name>-base`; an API key goes through the environment, never the command
line. Readiness is vLLM's own `/health`. `serve --engine vllm` runs it in the foreground
(`run_vllm`); export verification starts it for a while (`started_vllm`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from tunewright.core import chat
from tunewright.core.config import StrictModel
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.io import atomic_write
from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_tokenizer
from tunewright.core.progress import status
from tunewright.core.tools import ToolError
from tunewright.runtimes.net import free_port


class VllmConfig(StrictModel):
    python: str | None = None
    """Python of the environment where vLLM is installed (default: $TUNEWRIGHT_VLLM)."""
    tensor_parallel_size: int = Field(1, gt=0)
    """GPUs one model is split across (vLLM --tensor-parallel-size)."""
    dtype: str = "auto"
    """Weight dtype for vLLM (auto | float32 | bfloat16 | float16)."""
    extra_args: list[str] = Field(default_factory=list)
    """More `vllm serve` arguments, passed as they are."""


@dataclass
class VllmLaunch:
    """Where and how big: the address, and vLLM's context and batch bounds."""

    host: str
    port: int
    max_model_len: int
    max_num_seqs: int


def vllm_python(cfg: VllmConfig) -> str:
    """The Python of the vLLM environment, checked to exist."""
    python = cfg.python or os.environ.get("TUNEWRIGHT_VLLM")
    if not python:
        raise UserError("engine: vllm needs vllm.python in the serve config or $TUNEWRIGHT_VLLM (a Python with vLLM)")
    found = shutil.which(python) or (python if Path(python).is_file() else None)
    if found is None:
        raise UserError(f"vllm.python {python!r} is not an executable")
    return found


def vllm_command(
    cfg: VllmConfig, python: str, source: ModelSource, name: str, adapters: dict[str, str], launch: VllmLaunch
) -> list[str]:
    """The vLLM server command line for `source` served as `name`, with `adapters`."""
    if not Path(source.base).is_dir():
        raise UserError(f"engine: vllm serves a model directory; {source.base} is not one")
    loras = dict(adapters)
    served = name
    if source.adapter is not None:
        loras = {name: str(source.adapter), **loras}
        served = f"{name}-base"
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", source.base, "--served-model-name", served]
    cmd += ["--host", launch.host, "--port", str(launch.port), "--dtype", cfg.dtype]
    config = json.loads((Path(source.base) / "config.json").read_text(encoding="utf-8"))
    context = min(launch.max_model_len, config.get("max_position_embeddings") or launch.max_model_len)
    cmd += ["--max-model-len", str(context), "--max-num-seqs", str(launch.max_num_seqs)]
    cmd += ["--tensor-parallel-size", str(cfg.tensor_parallel_size)]
    cmd += _tool_flags(Path(source.base))
    if loras:
        rank = max(_rank(Path(p)) for p in loras.values())
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            str(rank),
            "--lora-modules",
            *(f"{n}={p}" for n, p in loras.items()),
        ]
    return cmd + list(cfg.extra_args)


def _tool_flags(model_dir: Path) -> list[str]:
    """vLLM's flags for tool calls in the format tunewright trains and serves: its Hermes parser, and where the
    model's template ignores tools, the tool-aware template (`chat.portable_template`) from a file named by
    its content. None for a template that writes calls in another format (tunewright serves no tools there)."""
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return []  # vLLM finds the tokenizer elsewhere (or fails on its own terms)
    tokenizer = load_tokenizer(model_dir, require_chat_template=False)
    if not tokenizer.chat_template:
        return []
    try:
        chat.tool_mode(tokenizer)
    except ToolError:
        return []
    flags = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    template = chat.portable_template(tokenizer)
    if template != tokenizer.chat_template:
        digest = hashlib.sha256(template.encode()).hexdigest()
        path = Path(tempfile.gettempdir()) / "tunewright-templates" / f"{digest}.jinja"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as out:
                out.write(template)
        flags += ["--chat-template", str(path)]
    return flags


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

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if wait_ready(proc, host, port):
            print(f"vLLM is ready on http://{host}:{port}/v1", file=sys.stderr)
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def started_vllm(
    cfg: VllmConfig, source: ModelSource, name: str, max_model_len: int, start_timeout_s: float
) -> Iterator[str]:
    """vLLM serving `source` as `name` on a free local port until the block ends; yields its `/v1` URL.
    Not ready within `start_timeout_s`, or dead before, is a CheckFailed quoting the end of its log."""
    launch = VllmLaunch("127.0.0.1", free_port(), max_model_len, 32)
    cmd = vllm_command(cfg, vllm_python(cfg), source, name, {}, launch)
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", **os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            with status(f"starting vLLM on {source.label}"):
                ready = wait_ready(proc, launch.host, launch.port, start_timeout_s)
            if not ready:
                log.seek(0)
                raise CheckFailed(f"vLLM did not start on {source.label}; its log ends:\n{log.read()[-3000:]}")
            yield f"http://{launch.host}:{launch.port}/v1"
        finally:
            stop_process(proc)


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
