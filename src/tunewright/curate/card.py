"""The data card: where the data came from, what was removed and why, what remains at risk."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tunewright.curate.config import CurateConfig

if TYPE_CHECKING:
    from tunewright.curate.stage import CurationResult

EXAMPLES_PER_STEP = 3


def _clip(text: str, n: int = 100) -> str:
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def render_card(cfg: CurateConfig, result: CurationResult) -> str:
    """Markdown data card for one curation run."""
    lines = [
        "# Data card",
        "",
        "## Sources",
        "",
        "| source | path | license | training allowed | lines read |",
        "|---|---|---|---|---|",
    ]
    for s in cfg.sources:
        read = result.lines_by_source.get(s.name, 0)
        if s.name in result.skipped_sources:
            read = f"skipped: {result.skipped_sources[s.name]}"
        lines.append(f"| {s.name} | {s.path} | {s.license} | {'yes' if s.allow_training else 'no'} | {read} |")
    lines += ["", "## What each step removed", "", "| step | in | out | removed |", "|---|---|---|---|"]
    quarantine = result.quarantine
    per_step = quarantine.by_step()
    read_removed = per_step.get("read", 0) + per_step.get("normalise", 0)
    lines.append(f"| read + normalise | {result.lines_read} | {result.lines_read - read_removed} | {read_removed} |")
    for step in result.steps:
        st = step.stats
        lines.append(f"| {st.name} | {st.records_in} | {st.records_out} | {st.records_in - st.records_out} |")
    lines += [
        "",
        f"Every input line is accounted for: {result.lines_read} read = {result.kept} kept + "
        f"{quarantine.count()} removed (see `{cfg.output.quarantine_dir}/`). "
        f"{quarantine.count('modified')} kept records were modified (cleaning, PII handling); "
        "their quarantine entries have `action: modified`.",
        "",
    ]
    pii = next((s for s in result.steps if s.name == "pii"), None)
    if pii is not None:
        lines += ["## Personal data", "", f"Mode: `{cfg.pii.mode}`.", "", "| type | found |", "|---|---|"]
        lines += [f"| {kind} | {pii.counts.get(kind, 0)} |" for kind in cfg.pii.types]
        lines.append("")
    lines += ["## Examples of removed records", ""]
    order = ["read", "normalise", *(s.name for s in result.steps)]
    for step in sorted(quarantine.entries, key=order.index):
        entries = quarantine.entries[step]
        lines.append(f"**{step}** ({per_step[step]} {entries[0]['action']}):")
        lines.append("")
        for e in entries[:EXAMPLES_PER_STEP]:
            shown = e.get("record", {}).get("messages") or e.get("raw")
            text = json.dumps(shown, ensure_ascii=False) if not isinstance(shown, str) else shown
            lines.append(f"- `{e.get('path')}:{e.get('line')}` — {e['reason']} — {_clip(text or '')}")
        lines.append("")
    decon_step = next((s for s in result.steps if s.name == "decontaminate"), None)
    if decon_step is not None:
        lines += ["## Eval contamination", ""]
        if decon_step.matches:
            lines += ["| training record | matched eval items |", "|---|---|"]
            lines += [f"| {rid} | {', '.join(items)} |" for rid, items in decon_step.matches.items()]
        else:
            lines.append("No training record contained an eval prompt n-gram.")
        lines.append("")
    lines += ["## Splits", "", "| split | records | sha256 |", "|---|---|---|"]
    for name, size in result.split_counts.items():
        lines.append(f"| {name} | {size} | `{result.split_hashes.get(name, '')}` |")
    lines += ["", f"Split seed {cfg.split.seed}; validation {cfg.split.validation}, test {cfg.split.test}.", ""]
    decon = [s for s in result.steps if s.name == "decontaminate"]
    lines += ["## Remaining risks", ""]
    if decon:
        lines.append(
            f"- Decontamination looked for {cfg.decontaminate.ngram}-grams of the eval prompts in "
            f"{', '.join(cfg.decontaminate.eval_sets)}; paraphrased eval items are not detected."
        )
    else:
        lines.append("- No decontamination against eval sets was configured: eval results may be inflated.")
    if pii is None:
        lines.append("- Personal data was not scanned: the splits may contain emails, phone numbers, secrets.")
    else:
        lines.append(
            "- PII detection is pattern-based: names, addresses and free-text personal details are not detected."
        )
    if cfg.fuzzy_dedup.enabled:
        lines.append(
            "- Near duplicates were removed by MinHash LSH; paraphrases in other words remain (no semantic dedup)."
        )
    else:
        lines.append("- Near duplicates that differ by more than case and whitespace remain (no fuzzy dedup).")
    if cfg.language.enabled:
        lines.append(
            f"- Language ID (py3langid) kept {', '.join(cfg.language.languages)} above "
            f"{cfg.language.min_score}; mixed-language records are judged as a whole."
        )
    if cfg.quality.enabled:
        lines.append(
            f"- Quality filters are heuristics (preset `{cfg.quality.preset}`); they do not check factual correctness."
        )
    else:
        lines.append("- No quality filters were applied beyond removing empty and malformed records.")
    lines.append("")
    return "\n".join(lines)
