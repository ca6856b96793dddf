"""The eval report, rendered from the run's summary (`eval.json`), in Markdown and self-contained HTML.

Both say the same things in the same order: the verdict and the config hash, the gate
table, every metric with its confidence interval for the model and the baseline and the
paired difference, the lineage of each model, the worst regressions item by item with
both answers, and blind-review results once imported. The HTML draws per-metric bars with
interval whiskers and per-task deltas as inline SVG, so the file opens anywhere offline.
"""

from __future__ import annotations

import html
import math
from typing import Any

from tunewright.core.tables import html_table, markdown_cell, markdown_table

BADGE = {"GO": "#1a7f37", "NO-GO": "#cf222e", "INCONCLUSIVE": "#9a6700"}
STATUS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "INCONCLUSIVE": "#9a6700"}


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.4g}" if abs(x) >= 100 else f"{x:.3f}"


def _ci(d: dict[str, float] | None, signed: bool = False) -> str:
    if not d:
        return ""
    value = f"{d['value']:+.3f}" if signed and not math.isnan(d["value"]) else _num(d["value"])
    return f"{value} [{_num(d['low'])}, {_num(d['high'])}]"


def _text(text: str | None) -> str:
    return text or "(empty)"


def _lineage_lines(models: dict[str, Any]) -> list[str]:
    lines = []
    for role, m in models.items():
        where = m.get("url") or m.get("base") or ""
        lines.append(f"- **{role}** `{m['label']}` ({m['kind']}{': ' + where if where else ''})")
        for step in m.get("lineage", []):
            raw = f"; raw: {', '.join(step['raw_sources'])}" if step["raw_sources"] else ""
            lines.append(f"  {'  ' * step['depth']}- {step['stage']} `{step['run']}`{raw}")
    return lines


def _reviewer_lines(r: dict[str, Any]) -> list[str]:
    """Per-reviewer win rates and inter-reviewer agreement of a review in the browser (none for a CSV review)."""
    if not r.get("reviewers"):
        return []
    lines = [f"Both answers bad: {r['both_bad']} judgments. Per reviewer (ties and both-bad count half):"]
    for name, v in r["reviewers"].items():
        lines.append(f"- {name}: {v['judged']} judged, win rate {_ci(v['win_rate'])}, {v['both_bad']} both bad")
    agreement = r["agreement"]
    if agreement["pairs"]:
        lines.append("Agreement between reviewers (same verdict on the pairs both judged; Cohen's kappa):")
        for g in agreement["pairs"]:
            kappa = "n/a" if g["kappa"] is None else f"{g['kappa']:.2f}"
            who = " & ".join(g["reviewers"])
            lines.append(f"- {who}: {g['pairs']} pairs, {g['agreement']:.0%} agree, kappa {kappa}")
        if agreement["mean_kappa"] is not None:
            lines.append(f"- mean kappa {agreement['mean_kappa']:.2f}")
    else:
        lines.append("No pair was judged by two reviewers, so there is no agreement to report.")
    return [*lines, ""]


def render_markdown(s: dict[str, Any]) -> str:
    """The Markdown report."""
    level = round(s["confidence"] * 100)
    has_base = "baseline" in s["models"]
    lines = [
        "# Eval report",
        "",
        f"**Verdict: {s['verdict']}** · run `{s['run_id']}` · config sha256 `{s['config_hash']}`",
        "",
        f"Model **{s['models']['model']['label']}**"
        + (f" against baseline **{s['models']['baseline']['label']}**" if has_base else "")
        + f". Intervals: {level}% paired bootstrap over items ({s['bootstrap']} resamples, seed {s['seed']}).",
        "",
        "## Gates (fixed in the config before these results)",
        "",
    ]
    gates = [
        [g["metric"], g["rule"], g["tier"], _ci(g["model"]), _ci(g["difference"], True), f"**{g['status']}**"]
        for g in s["gates"]
    ]
    header = ["gate", "rule", "tier", "model", "difference vs baseline", "status"]
    lines += markdown_table(header, gates or [["(no gates configured)", "", "", "", "", ""]])
    lines += ["", "## Metrics", ""]
    for task in s["tasks"]:
        lines += [f"### {task['name']} ({task['items']} items)", ""]
        rows = [
            [
                m["name"] + ("" if m["higher_is_better"] else " (lower is better)"),
                _ci(m["model"]),
                _ci(m["baseline"]),
                _ci(m["difference"], True),
            ]
            for m in task["metrics"]
        ]
        lines += [*markdown_table(["metric", "model", "baseline", "difference"], rows), ""]
    if s.get("judges"):
        lines += ["## Judges", ""]
        for name, j in s["judges"].items():
            lines.append(f"- {name}: {j['replies']} verdicts asked, {j['junk']} unusable (left out of the mean)")
        lines.append("")
    if s.get("review"):
        r = s["review"]
        lines += [
            "## Blind review",
            "",
            f"{r['judged']} pairs judged by reviewers ({r['ties']} ties, {r['skipped']} left blank). "
            f"Model win rate **{_ci(r['win_rate'])}** (ties count half).",
            "",
            *_reviewer_lines(r),
        ]
    lines += ["## Lineage", "", *_lineage_lines(s["models"]), ""]
    if s["worst"]:
        lines += ["## Worst regressions against the baseline", ""]
        for w in s["worst"]:
            lines += [
                f"**{w['task']} / {w['id']}** — {w['metric']} {_num(w['baseline_score'])} → {_num(w['model_score'])}",
                "",
                f"> {markdown_cell(_text(w['question']))}",
                "",
            ]
            answers = [["reference", _text(w["reference"])]] if w["reference"] is not None else []
            answers += [["baseline", _text(w["baseline_answer"])], ["model", _text(w["model_answer"])]]
            lines += [*markdown_table(["", "answer"], answers), ""]
    elif has_base:
        lines += [
            "## Worst regressions against the baseline",
            "",
            "No item got worse on its task's primary metric.",
            "",
        ]
    return "\n".join(lines)


def _bars_svg(task: dict[str, Any]) -> str:
    """Per-metric bars (model vs baseline) with interval whiskers, for metrics on a 0-1 scale."""
    rows = [m for m in task["metrics"] if all(0 <= (m[k] or {}).get("value", 0) <= 1 for k in ("model", "baseline"))]
    if not rows:
        return ""
    width, label_w, bar_h, gap = 640, 150, 12, 10
    scale = width - label_w - 20
    height = len(rows) * (2 * bar_h + gap) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    for t in (0, 0.5, 1):
        x = label_w + t * scale
        parts.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height - 18}" stroke="#ddd"/>')
        parts.append(f'<text x="{x}" y="{height - 4}" font-size="10" text-anchor="middle">{t:g}</text>')
    y = 4
    for m in rows:
        parts.append(f'<text x="0" y="{y + bar_h + 4}" font-size="11">{html.escape(m["name"])}</text>')
        for key, colour in (("model", "#0969da"), ("baseline", "#8c959f")):
            d = m[key]
            if d is None or math.isnan(d["value"]):
                continue
            w = max(0.0, d["value"]) * scale
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}"/>')
            if not math.isnan(d["low"]):
                x1, x2 = label_w + d["low"] * scale, label_w + d["high"] * scale
                mid = y + bar_h / 2
                parts.append(f'<line x1="{x1:.1f}" y1="{mid}" x2="{x2:.1f}" y2="{mid}" stroke="#000"/>')
                for x in (x1, x2):
                    parts.append(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{y + bar_h - 2}" stroke="#000"/>')
            y += bar_h
        y += gap
    parts.append("</svg>")
    return "".join(parts)


def _deltas_svg(tasks: list[dict[str, Any]]) -> str:
    """Paired differences (oriented so right is better) with intervals, one row per task metric."""
    rows = []
    for t in tasks:
        for m in t["metrics"]:
            d = m["difference"]
            if d and not math.isnan(d["value"]) and abs(d["value"]) <= 1 and not math.isnan(d["low"]):
                sign = 1 if m["higher_is_better"] else -1
                lo, hi = sorted((sign * d["low"], sign * d["high"]))
                rows.append((f"{t['name']}.{m['name']}", sign * d["value"], lo, hi))
    if not rows:
        return ""
    width, label_w, row_h = 640, 220, 18
    scale = (width - label_w - 20) / 2
    mid = label_w + scale
    height = len(rows) * row_h + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(f'<line x1="{mid}" y1="0" x2="{mid}" y2="{height - 18}" stroke="#888"/>')
    for t in (-1, 0, 1):
        parts.append(f'<text x="{mid + t * scale}" y="{height - 4}" font-size="10" text-anchor="middle">{t:+g}</text>')
    for i, (name, value, lo, hi) in enumerate(rows):
        y = i * row_h + 4
        colour = "#1a7f37" if lo > 0 else "#cf222e" if hi < 0 else "#9a6700"
        parts.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(name)}</text>')
        x0, x1 = sorted((mid, mid + max(-1, min(1, value)) * scale))
        parts.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{x1 - x0:.1f}" height="8" fill="{colour}"/>')
        parts.append(
            f'<line x1="{mid + max(-1, lo) * scale:.1f}" y1="{y + 7}" x2="{mid + min(1, hi) * scale:.1f}" '
            f'y2="{y + 7}" stroke="#000"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(s: dict[str, Any]) -> str:
    """The self-contained HTML report (no external resources)."""
    e = html.escape
    level = round(s["confidence"] * 100)
    colour = BADGE.get(s["verdict"], "#57606a")
    gate_rows = [
        [
            e(g["metric"]),
            e(g["rule"]),
            e(g["tier"]),
            e(_ci(g["model"])),
            e(_ci(g["difference"], True)),
            f'<b style="color:{STATUS[g["status"]]}">{g["status"]}</b>',
        ]
        for g in s["gates"]
    ] or [["(no gates configured)", "", "", "", "", ""]]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Eval report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#1f2328}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:4px 8px;"
        "vertical-align:top;text-align:left}th{background:#f6f8fa}",
        ".verdict{display:inline-block;padding:6px 14px;color:#fff;font-weight:bold;border-radius:6px}",
        "pre{white-space:pre-wrap;margin:0;font-family:inherit}code{font-size:90%}",
        "</style></head><body>",
        "<h1>Eval report</h1>",
        f'<p><span class="verdict" id="verdict" style="background:{colour}">{e(s["verdict"])}</span></p>',
        f"<p>Run <code>{e(s['run_id'])}</code> · config sha256 <code id='config-hash'>{e(s['config_hash'])}</code></p>",
        f"<p>Model <b>{e(s['models']['model']['label'])}</b>"
        + (f" against baseline <b>{e(s['models']['baseline']['label'])}</b>" if "baseline" in s["models"] else "")
        + f". Intervals: {level}% paired bootstrap over items ({s['bootstrap']} resamples, seed {s['seed']}).</p>",
        "<h2>Gates (fixed in the config before these results)</h2>",
        '<div id="gates">'
        + html_table(["gate", "rule", "tier", "model", "difference vs baseline", "status"], gate_rows)
        + "</div>",
        "<h2>Metrics</h2>",
        f'<p><span style="color:#0969da">&#9632;</span> model <span style="color:#8c959f">&#9632;</span> baseline; '
        f"whiskers: the {level}% interval (bars for metrics on a 0-1 scale)</p>",
    ]
    for task in s["tasks"]:
        rows = [
            [
                e(m["name"] + ("" if m["higher_is_better"] else " (lower is better)")),
                e(_ci(m["model"])),
                e(_ci(m["baseline"])),
                e(_ci(m["difference"], True)),
            ]
            for m in task["metrics"]
        ]
        out += [
            f"<h3>{e(task['name'])} ({task['items']} items)</h3>",
            html_table(["metric", "model", "baseline", "difference"], rows),
            _bars_svg(task),
        ]
    deltas = _deltas_svg(s["tasks"])
    if deltas:
        out += ["<h2>Differences vs baseline (right is better)</h2>", deltas]
    if s.get("review"):
        r = s["review"]
        out += [
            "<h2>Blind review</h2>",
            f"<p>{r['judged']} pairs judged ({r['ties']} ties, {r['skipped']} blank). "
            f"Model win rate <b>{e(_ci(r['win_rate']))}</b>.</p>",
        ]
        if r.get("reviewers"):
            out.append("<pre>" + e("\n".join(_reviewer_lines(r))) + "</pre>")
    out += ["<h2>Lineage</h2>", "<pre>" + e("\n".join(_lineage_lines(s["models"]))) + "</pre>"]
    if s["worst"]:
        out.append("<h2>Worst regressions against the baseline</h2>")
        for w in s["worst"]:
            rows = [["reference", f"<pre>{e(w['reference'] or '')}</pre>"]] if w["reference"] is not None else []
            rows += [
                ["baseline", f"<pre>{e(w['baseline_answer'] or '(empty)')}</pre>"],
                ["model", f"<pre>{e(w['model_answer'] or '(empty)')}</pre>"],
            ]
            out += [
                f"<h3>{e(w['task'])} / {e(w['id'])}: {e(w['metric'])} "
                f"{_num(w['baseline_score'])} → {_num(w['model_score'])}</h3>",
                f"<blockquote>{e(w['question'])}</blockquote>",
                html_table(["", "answer"], rows),
            ]
    out.append("</body></html>")
    return "\n".join(out)
