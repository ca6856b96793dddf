"""The data card: where the data came from, what was removed and why, what remains at risk."""

from __future__ import annotations

import json

from tunewright.core.tables import markdown_table
from tunewright.curate.config import CurateConfig, SourceConfig
from tunewright.curate.decontaminate import Decontaminate
from tunewright.curate.result import CurationResult

EXAMPLES_PER_STEP = 3
MATCH_ROWS = 50  # contaminated records listed in the card (all of them are in the quarantine)


def _clip(text: str, n: int = 100) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def render_card(cfg: CurateConfig, result: CurationResult) -> str:
    """Markdown data card for one curation run."""
    lines = [
        "# Data card",
        "",
        "## Sources",
        "",
    ]
    kept_by_source = result.kept_records.by_source
    sources = [
        [s.name, s.path, s.license, "yes" if s.allow_training else "no", _read(result, s.name),
         kept_by_source.get(s.name, 0)]
        for s in cfg.sources if s.kind == "chat"
    ]  # fmt: skip
    lines += markdown_table(["source", "path", "license", "training allowed", "lines read", "kept"], sources)
    lines += _usage_notes([s for s in cfg.sources if s.kind == "chat"])
    lines += ["", "## What each step did", ""]
    quarantine = result.quarantine
    per_step = quarantine.by_step()
    modified = quarantine.by_step_action("modified")
    read_removed = per_step.get("read", 0) + per_step.get("normalise", 0)
    steps = [["read + normalise", result.lines_read, result.lines_read - read_removed, read_removed, 0]]
    for step in (s for s in result.steps if s.in_card):
        st = step.stats
        steps.append([st.name, st.records_in, st.records_out, st.records_in - st.records_out, modified.get(st.name, 0)])
    lines += markdown_table(["step", "in", "out", "removed", "modified"], steps)
    changed_then_removed = quarantine.modified() - result.kept_records.modified
    lines += [
        "",
        f"Every input line is accounted for: {result.lines_read} read = {result.kept} kept + "
        f"{quarantine.count()} removed (see `{cfg.output.quarantine_dir}/`). "
        f"{result.kept_records.modified} of the {result.kept} kept records were modified (cleaning, PII handling); "
        "their quarantine entries have `action: modified`"
        + (f"; {changed_then_removed} more were modified and later removed." if changed_then_removed else "."),
        "",
        "## Lengths of the kept records (words)",
        "",
    ]
    lengths = [
        [split, result.split_counts[split], *(stats[side][k] for side in ("prompt_words", "answer_words")
                                              for k in ("median", "p95", "max"))]
        for split, stats in result.lengths().items()
    ]  # fmt: skip
    header = ["split", "records", "prompt median", "prompt p95", "prompt max", "answer median", "answer p95"]
    lines += [*markdown_table([*header, "answer max"], lengths), ""]
    tool_use = result.kept_records.tool_use()
    if tool_use["records_with_tools"]:
        per_record = tool_use["calls_per_record"]
        lines += ["## Tool use", ""]
        lines.append(
            f"{tool_use['records_with_tools']} of the {result.kept} kept records declare tools; calls per such record: "
            f"median {per_record['median']}, mean {per_record['mean']}, max {per_record['max']}."
        )
        rows = [[name, t["records"], t["calls"]] for name, t in tool_use["tools"].items()]
        lines += ["", *markdown_table(["tool", "records declaring it", "calls"], rows), ""]
    pii = next((s for s in result.steps if s.name == "pii"), None)
    if pii is not None:
        lines += ["## Personal data", "", f"Mode: `{cfg.pii.mode}`.", ""]
        lines += [*markdown_table(["type", "found"], [[k, pii.counts.get(k, 0)] for k in cfg.pii.types]), ""]
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
        lines += _contamination(cfg, decon_step)
    lines += ["## Splits", ""]
    splits = [[name, size, f"`{result.split_hashes.get(name, '')}`"] for name, size in result.split_counts.items()]
    lines += markdown_table(["split", "records", "sha256"], splits)
    lines += ["", f"Split seed {cfg.split.seed}; validation {cfg.split.validation}, test {cfg.split.test}.", ""]
    decon = [s for s in result.steps if s.name == "decontaminate"]
    lines += ["## Remaining risks", ""]
    if decon:
        lines.append(
            f"- Decontamination looked for {cfg.decontaminate.ngram}-grams of the eval prompts in "
            f"{', '.join(cfg.decontaminate.eval_sets)}; paraphrased eval items are not detected"
            + (
                f", and an eval item copied into more than {cfg.decontaminate.max_matches} training records "
                "looks like common phrasing and stays."
                if cfg.decontaminate.max_matches
                else "."
            )
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


def _contamination(cfg: CurateConfig, step: Decontaminate) -> list[str]:
    d = cfg.decontaminate
    guard = (
        f"An n-gram found in more than {d.max_matches} training records is common phrasing shared with the eval "
        "prompts (templates, greetings), not a leaked eval item, and is ignored (`decontaminate.max_matches`)."
        if d.max_matches
        else "Every matching n-gram removes its records (`decontaminate.max_matches: null`)."
    )
    lines = ["## Eval contamination", "", guard, ""]
    per_set = [[name, r["ngrams"], r["removed"], r["ignored"]] for name, r in step.per_set().items()]
    header = ["eval set", "n-grams", "training records removed", "n-grams ignored as common"]
    lines += [*markdown_table(header, per_set), ""]
    if step.ignored:
        rows = []
        for gram, n in sorted(step.ignored.items(), key=lambda kv: -kv[1])[:MATCH_ROWS]:
            items = sorted(step.items_of(gram))
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            rows.append([_clip(gram, 80), n, shown])
        lines += ["Ignored as common phrasing:", ""]
        lines += [*markdown_table(["n-gram", "training records", "eval items"], rows), ""]
    if step.matches:
        rows = [[rid, ", ".join(items)] for rid, items in list(step.matches.items())[:MATCH_ROWS]]
        if len(step.matches) > MATCH_ROWS:
            rows.append([f"… {len(step.matches) - MATCH_ROWS} more", "see the quarantine"])
        lines += markdown_table(["removed training record", "matched eval items"], rows)
    else:
        lines.append("No training record contained a distinctive eval prompt n-gram.")
    lines.append("")
    return lines


def render_pairs_section(cfg: CurateConfig, result: CurationResult) -> str:
    """The data card's section on preference pairs (sources with `kind: preference`)."""
    lines = [
        "",
        "## Preference pairs",
        "",
        "For `objective: dpo`: cleaned, PII-handled, deduplicated on prompt + chosen answer and decontaminated "
        "like conversations; pairs with an empty or identical answer are quarantined (`data/quarantine/pairs/`).",
        "",
    ]
    sources = [
        [s.name, s.path, s.license, _read(result, s.name), result.kept_records.by_source.get(s.name, 0)]
        for s in cfg.sources
        if s.kind == "preference"
    ]
    lines += [*markdown_table(["source", "path", "license", "lines read", "kept"], sources), ""]
    notes = _usage_notes([s for s in cfg.sources if s.kind == "preference"])
    lines += [*notes[1:], ""] if notes else []
    removed = result.quarantine.by_step_action("removed")
    read_removed = removed.get("read", 0) + removed.get("normalise", 0)
    steps = [["read + normalise", result.lines_read, result.lines_read - read_removed, read_removed]]
    for step in (s for s in result.steps if s.in_card):
        steps.append([step.name, step.stats.records_in, step.stats.records_out, removed.get(step.name, 0)])
    lines += [*markdown_table(["step", "in", "out", "removed"], steps), ""]
    splits = [
        [f"pairs-{name}", n, f"`{result.split_hashes.get(name, '')[:16]}…`"] for name, n in result.split_counts.items()
    ]
    lines += markdown_table(["split", "pairs", "sha256"], splits)
    return "\n".join(lines) + "\n"


def _usage_notes(sources: list[SourceConfig]) -> list[str]:
    """Why the team may train on the sources that say so (production captures must), as card lines."""
    notes = [f"- `{s.name}` may be trained on because: {s.usage_note}" for s in sources if s.usage_note]
    return ["", *notes] if notes else []


def _read(result: CurationResult, source: str) -> int | str:
    """Lines read from a source, or why it was skipped."""
    if source in result.skipped_sources:
        return f"skipped: {result.skipped_sources[source]}"
    return result.lines_by_source.get(source, 0)
