"""The monitor report: Markdown, and a self-contained HTML page with inline SVG plots (no scripts, no
network), from the summary `stage.analyse` builds."""

from __future__ import annotations

import html
from typing import Any

FIGURES = (
    ("requests", "requests", "{:d}"),
    ("error_rate", "error rate", "{:.1%}"),
    ("latency_p50_s", "latency p50 (s)", "{:.3f}"),
    ("latency_p95_s", "latency p95 (s)", "{:.3f}"),
    ("ttft_p95_s", "TTFT p95 (s)", "{:.3f}"),
    ("completion_tokens", "output tokens", "{:d}"),
    ("answer_chars_mean", "answer chars", "{:.0f}"),
    ("refusal_rate", "refusals", "{:.1%}"),
    ("json_validity", "JSON valid", "{:.1%}"),
    ("tool_call_validity", "tool calls valid", "{:.1%}"),
    ("feedback_score_mean", "feedback", "{:.2f}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    return spec.format(int(value) if spec == "{:d}" else value)


def _drift_line(name: str, d: dict[str, Any]) -> str:
    if not d.get("tested"):
        return f"- Input drift against {name}: not tested ({d.get('why')})."
    verdict = "**drift**" if d["drifted"] else "no drift"
    return (
        f"- Input drift against {name}: {verdict} (MMD² {d['mmd2']:.4f}, p = {d['p_value']:.4f}; "
        f"{d['n_window']} window prompts, {d['n_reference']} reference prompts)."
    )


def render_markdown(s: dict[str, Any]) -> str:
    lines = [
        "# Monitor report",
        "",
        f"Generated {s['generated']} from {s['requests']} captured requests, windows of {s['window_hours']:g} h.",
        "",
    ]
    if s["breaches"]:
        lines += ["## Breaches", ""] + [f"- {b['message']}" for b in s["breaches"]] + [""]
    else:
        lines += ["No breaches.", ""]
    for v in s["versions"]:
        lines += [f"## {v['model']} — {v['version'] or 'unknown version'}", ""]
        if v["train_run"]:
            lines += [f"Trained in {v['train_run']} on `{v['train_path']}`.", ""]
        header = ["window", *(label for _, label, _ in FIGURES), "finish reasons"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for w in v["windows"]:
            st = w["stats"]
            cells = [w["start_iso"], *(_fmt(st[key], spec) for key, _, spec in FIGURES)]
            cells.append(", ".join(f"{k} {n}" for k, n in sorted(st["finish_reasons"].items())))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for name, key in (("the training prompts", "training"), ("the previous window", "previous_window")):
            drift = v["input_drift"][key]
            lines.append(_drift_line(name, drift))
            for moved in drift.get("moved", []):
                examples = "; ".join(f"“{e[:120]}”" for e in dict.fromkeys(moved["examples"]))
                lines.append(
                    f"  - a cluster grew from {moved['reference_share']:.1%} to {moved['window_share']:.1%}: {examples}"
                )
        od = v["output_drift"]
        if od.get("tested"):
            lines.append(
                f"- Output against the eval answers ({od['eval_run']}): mean length {od['answer_chars_mean']:.0f} vs "
                f"{od['eval_answer_chars_mean']:.0f} chars, refusals {od['refusal_rate']:.1%} vs "
                f"{od['eval_refusal_rate']:.1%}."
            )
        else:
            lines.append(f"- Output drift: not tested ({od.get('why')}).")
        lines.append("")
    return "\n".join(lines)


def _line_svg(title: str, series: dict[str, list[tuple[float, float]]], width: int = 560, height: int = 180) -> str:
    """A small line chart: one polyline per series over window start times."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(ys) if max(ys) > 0 else 1.0
    pad = 36
    colors = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{pad}" y="14" font-size="12">{html.escape(title)} (max {y1:.3g})</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 8}" y2="{height - pad}" stroke="#999"/>',
    ]
    for i, (name, values) in enumerate(series.items()):
        coords = " ".join(
            f"{pad + (x - x0) / (x1 - x0) * (width - pad - 8):.1f},{height - pad - y / y1 * (height - pad - 24):.1f}"
            for x, y in values
        )
        color = colors[i % len(colors)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for x, y in values:
            cx = pad + (x - x0) / (x1 - x0) * (width - pad - 8)
            cy = height - pad - y / y1 * (height - pad - 24)
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}"/>')
        parts.append(
            f'<text x="{pad}" y="{height - 8 - 14 * i}" font-size="11" fill="{color}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(s: dict[str, Any]) -> str:
    charts = []
    for key, label in (
        ("requests", "requests per window"),
        ("latency_p95_s", "latency p95 (s)"),
        ("error_rate", "error rate"),
        ("answer_chars_mean", "mean answer length (chars)"),
    ):
        series = {
            f"{v['model']} {v['version'] or ''}".strip(): [
                (w["start"], float(w["stats"][key])) for w in v["windows"] if w["stats"][key] is not None
            ]
            for v in s["versions"]
        }
        charts.append(_line_svg(label, series))
    body = html.escape(render_markdown(s))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tunewright monitor report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
        "pre{white-space:pre-wrap;font-size:13px}svg{margin:0.5rem 1rem 0 0}</style></head><body>"
        "<h1>Monitor report</h1><div>" + "".join(charts) + "</div><pre>" + body + "</pre></body></html>"
    )
