"""llama.cpp (through llama-cpp-python) in a child process: answers and top-1 agreement from a GGUF file.

llama.cpp is native code whose builds differ per machine; one that crashes (a segmentation
fault in its CPU kernels) must fail the check that used it with a message, not kill
tunewright mid-export. So the work runs in `python -m tunewright.runtimes.llamacpp_worker`
and comes back as JSON lines. On CPUs with AMX, llama.cpp's repacked kernels for 8-bit and
4-bit blocks (its "extra buffer types") crash some builds on any such file, the package's
own included, while its plain kernels read the file correctly: after a crash the file is
read once more without repacking (`llama-server --no-repack`), and the caller is told, so
it can say so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.progress import status
from tunewright.runtimes.llamacpp_worker import TAG


@dataclass
class Job:
    """One prompt: its rendered text, its Hugging Face ids, the answer to read, how many tokens to generate."""

    text: str
    prompt: list[int]
    answer: list[int]
    max_tokens: int


@dataclass
class Read:
    """What llama.cpp made of a job: its tokenization of the text, its greedy answer (None when the
    tokenization differs), and how many of the answer's tokens it ranked first."""

    tokens: list[int]
    text: str | None
    hits: int
    total: int


@dataclass
class Reading:
    """Every job's `Read`; `crash` says how llama.cpp's default (repacked) kernels failed when the reads
    had to come from its plain kernels instead (None: the default kernels read the file)."""

    reads: list[Read]
    crash: str | None = None


class _Crashed(Exception):
    def __init__(self, reason: str, done: int, tail: str) -> None:
        super().__init__(reason)
        self.reason, self.done, self.tail = reason, done, tail


def require_llamacpp() -> None:
    """Refuse early, with the install command, when llama-cpp-python is missing."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise UserError("--verify-with llama.cpp needs llama-cpp-python: pip install llama-cpp-python") from None


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def read_gguf(gguf: Path, jobs: list[Job], threads: int, advance: Callable[[int], None] | None = None) -> Reading:
    """Run every job through llama.cpp on `gguf` in a child process; after a crash, once more without
    repacking the weights; a crash of that too raises CheckFailed."""
    try:
        return Reading(_run_worker(gguf, jobs, threads, True, advance))
    except _Crashed as first:
        if advance is not None:
            advance(-first.done)
        try:
            return Reading(_run_worker(gguf, jobs, threads, False, advance), crash=first.reason)
        except _Crashed as second:
            raise CheckFailed(
                f"llama.cpp {first.reason} while reading {gguf.name} (after {first.done} of {len(jobs)} prompts), "
                f"and {second.reason} without repacking too (after {second.done}), so the export could not be "
                "verified with it. If it also fails on other GGUF files, the llama-cpp-python build on this "
                "machine is at fault: reinstall it, or verify on another machine"
                + (f". Its output ends:\n{second.tail}" if second.tail else "")
            ) from None


def _run_worker(
    gguf: Path, jobs: list[Job], threads: int, repack: bool, advance: Callable[[int], None] | None
) -> list[Read]:
    n_ctx = max(len(j.prompt) + max(len(j.answer), j.max_tokens) for j in jobs) + 1
    request = {"gguf": str(gguf), "n_ctx": n_ctx, "threads": threads, "repack": repack}
    request["jobs"] = [asdict(j) for j in jobs]
    cmd = [sys.executable, "-m", "tunewright.runtimes.llamacpp_worker"]
    reads: list[Read] = []
    with tempfile.TemporaryFile(mode="w+") as log:
        with status(f"reading {gguf.name} with llama.cpp" + ("" if repack else " (no repacking)")):
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            for line in proc.stdout:
                if line.startswith(TAG):
                    reads.append(Read(**json.loads(line[len(TAG) :])))
                    if advance is not None:
                        advance(1)
            code = proc.wait()
        if code != 0 or len(reads) != len(jobs):
            log.seek(0)
            raise _Crashed(_exit_reason(code), len(reads), log.read()[-2000:].strip())
    return reads
