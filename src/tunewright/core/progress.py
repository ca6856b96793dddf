"""Progress for every long step, on a terminal and in logs alike.

On a terminal, rich draws a bar (or a spinner for steps without a count) on stderr. When
stderr is not a terminal (CI, Slurm, `| tee`, a file), a plain line is written when the
step starts, every `TUNEWRIGHT_PROGRESS_EVERY` seconds (default 30) while it runs, and
when it ends, so a log shows that a long command is alive and how far it got. Stdout
stays clean for what a command prints as its result.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def plain_interval() -> float:
    """Seconds between plain progress lines (`TUNEWRIGHT_PROGRESS_EVERY`, default 30)."""
    try:
        return max(0.0, float(os.environ.get("TUNEWRIGHT_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _say(line: str) -> None:
    console.file.write(line + "\n")
    console.file.flush()


class _PlainProgress:
    """Plain progress lines: at the start, at most every `interval` seconds, and at the end."""

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total = description, total
        self.done, self.info = 0, ""
        self.t0 = self.last = time.monotonic()
        self.interval = plain_interval()
        _say(f"{description}: started" + (f" ({total} to do)" if total else ""))

    def _line(self, now: float) -> str:
        count = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"
        left = ""
        if self.total and 0 < self.done < self.total:
            left = f", about {_clock((now - self.t0) / self.done * (self.total - self.done))} left"
        info = f", {self.info}" if self.info else ""
        return f"{self.description}: {count}, {_clock(now - self.t0)} elapsed{left}{info}"

    def advance(self, n: int = 1, **fields: str) -> None:
        self.done += n
        self.info = fields.get("info", self.info)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            _say(self._line(now))

    def finish(self, failed: bool) -> None:
        end = "stopped" if failed else "done"
        _say(f"{self._line(time.monotonic())} ({end})")


_live = {"active": False}  # rich shows one live display (bar or spinner) per console at a time


@contextmanager
def _one_live_display() -> Iterator[bool]:
    """True when the caller may start a live display (none is active yet)."""
    if _live["active"]:
        yield False
        return
    _live["active"] = True
    try:
        yield True
    finally:
        _live["active"] = False


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Show progress for `description`; yields `advance(n=1, **fields)` to step it.

    Extra keyword fields (for example `info="loss 1.23"`) are shown after the count;
    `enabled=False` hides it (ranks other than 0 of a distributed run).
    """
    if not enabled:
        yield lambda n=1, **fields: None
        return
    if not console.is_terminal:
        plain = _PlainProgress(description, total)
        try:
            yield plain.advance
        except BaseException:
            plain.finish(failed=True)
            raise
        plain.finish(failed=False)
        return
    with _one_live_display() as free:
        if not free:
            yield lambda n=1, **fields: None
            return
        with _rich_bar(description, total) as advance:
            yield advance


@contextmanager
def _rich_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: str) -> None:
            progress.update(task, advance=n, **fields)

        yield advance


@contextmanager
def status(description: str, enabled: bool = True) -> Iterator[None]:
    """A step without a count (loading, merging, saving): a spinner, or plain start / alive / end lines.

    On a terminal, a step inside another step's bar or spinner shows nothing of its own.
    """
    if not enabled:
        yield
        return
    if console.is_terminal:
        with _one_live_display() as free:
            if not free:
                yield
                return
            with console.status(description):
                yield
        return
    t0 = time.monotonic()
    _say(f"{description}: started")
    stop = threading.Event()

    def alive() -> None:
        while not stop.wait(plain_interval() or 1.0):
            _say(f"{description}: running, {_clock(time.monotonic() - t0)} elapsed")

    ticker = threading.Thread(target=alive, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
    _say(f"{description}: done in {_clock(time.monotonic() - t0)}")
