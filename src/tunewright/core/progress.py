"""One progress bar helper for every long step, so all stages look and behave alike.

Bars go to stderr through rich and disappear from logs that are not a terminal, so
stdout stays clean for what a command prints as its result.
"""

from __future__ import annotations

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


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Show a bar for `description`; yields `advance(n=1, **fields)` to step it.

    Extra keyword fields (for example `info="loss 1.23"`) are shown after the bar;
    `enabled=False` hides it (ranks other than 0 of a distributed run).
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
        disable=not (enabled and console.is_terminal),
    )
    with progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: str) -> None:
            progress.update(task, advance=n, **fields)

        yield advance
