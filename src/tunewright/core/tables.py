"""Tables in the reports: one Markdown and one HTML renderer for every card and report.

A cell is any value; Markdown cells have `|` escaped and line breaks written as `<br>` so a
cell never breaks its row. HTML cells are inserted as given: the caller escapes text and
may pass markup (a link, an interval with a bar).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Cell = object


def markdown_cell(value: Cell) -> str:
    """One Markdown table cell: `|` escaped, line breaks as `<br>`."""
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> list[str]:
    """A Markdown table's lines: the header, the separator, one line per row."""
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
    return lines + [f"| {' | '.join(markdown_cell(c) for c in row)} |" for row in rows]


def html_table(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """An HTML table; cells are inserted as given (escape text before)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
