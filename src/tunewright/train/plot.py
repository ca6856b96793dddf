"""The loss curve as a small standalone SVG in the run directory.

Written by hand (a polyline per series) so that training needs no plotting library; any
browser or Markdown viewer shows it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunewright.core.io import write_text

WIDTH, HEIGHT, PAD = 640, 360, 48
SERIES = (("loss", "train loss", "#1f77b4"), ("val_loss", "validation loss", "#d62728"))


def _points(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[key])) for r in rows if r.get(key) is not None and math.isfinite(r[key])]


def loss_curve_svg(rows: list[dict[str, Any]]) -> str:
    """SVG text plotting train and validation loss against the optimiser step."""
    series = [(label, colour, _points(rows, key)) for key, label, colour in SERIES]
    every = [p for _, _, pts in series for p in pts]
    if not every:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"></svg>\n'
    x0, x1 = min(p[0] for p in every), max(p[0] for p in every)
    y0, y1 = min(p[1] for p in every), max(p[1] for p in every)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD)

    def sy(y: float) -> float:
        return HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="black"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="black"/>',
        f'<text x="{PAD}" y="{HEIGHT - PAD + 16}">{x0:g}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 16}" text-anchor="end">step {x1:g}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">{y0:.3g}</text>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{y1:.3g}</text>',
    ]
    for i, (label, colour, pts) in enumerate(series):
        if not pts:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{WIDTH - PAD}" y="{PAD + 14 * i}" text-anchor="end" fill="{colour}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_loss_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text(path, loss_curve_svg(rows))
