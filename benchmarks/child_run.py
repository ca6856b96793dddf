"""Run one benchmark side in its own process, so the peak RSS measured is that side's alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def run_child(cmd: list[str], result: Path, name: str) -> dict:
    """Run `cmd`, which writes its figures to `result` as JSON; add its peak RSS (MiB) to them."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    return {**json.loads(result.read_text()), "rss_mib": usage.ru_maxrss / 1024}
