"""`reports/model-card.md` and `reports/release-notes.md`, rendered from `VersionFacts` only.

The model card follows the sections Hugging Face and Mitchell et al.'s model cards use
(model details, intended use, training data, evaluation, limitations, licenses); the
release notes answer what an on-call engineer asks before a deploy: what changed against
the version in production (data, training config, metrics with paired intervals) and what
to watch once it is live. Only `intended_use`, `out_of_scope` and `owner` are written by a
person, in `configs/card.yaml`; every other line comes from a run record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from tunewright.core.config import StrictModel, load_config
from tunewright.core.manifest import CurateResult, TrainMethod
from tunewright.core.runs import diff_manifests
from tunewright.core.tables import markdown_table
from tunewright.core.workspace import example_config
from tunewright.release.facts import VersionFacts

HYPERPARAMETERS = (
    "learning_rate",
    "max_steps",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "scheduler",
    "weight_decay",
    "max_grad_norm",
    "seed",
)


class CardConfig(StrictModel):
    intended_use: str | None = None
    """What the model is for (a person writes this; no run can record it)."""
    out_of_scope: str | None = None
    """What it must not be used for."""
    owner: str | None = None
    """Who answers for the model."""
    failure_items: int = Field(3, ge=0)
    """Items per task listed under "Known failure modes"."""


def load_card_config(workspace: Path) -> CardConfig:
    """The workspace's `configs/card.yaml`, else the shipped example."""
    path = workspace / "configs" / "card.yaml"
    if path.is_file():
        return load_config(path, CardConfig)
    return CardConfig.model_validate(yaml.safe_load(example_config("card.yaml")))


def _num(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a" if x is None else str(x)
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _ci(d: dict[str, float] | None, signed: bool = False) -> str:
    if not d:
        return "n/a"
    value = f"{d['value']:+.3f}" if signed else f"{d['value']:.3f}"
    return f"{value} [{d['low']:.3f}, {d['high']:.3f}]"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table whose empty cells say so."""
    return markdown_table(header, [[c if c not in (None, "") else "(empty)" for c in row] for row in rows])


def _method(train: dict[str, Any]) -> list[str]:
    cfg, res, method = train["config"], train["results"], TrainMethod.of(train)
    adapter = method.adapter
    lines = [f"- Training run `{train['run_id']}`: {method.describe()} on the `{method.task}` task"]
    peft = cfg.get("peft") or {}
    if adapter in ("lora", "dora") and peft:
        lines[-1] += (
            f", rank {peft.get('rank')}, alpha {peft.get('alpha')}, dropout {peft.get('dropout')}, "
            f"target modules {peft.get('target_modules')}"
        )
    model = cfg.get("model") or {}
    lines.append(
        f"- Sequence length {model.get('max_seq_length')}, dtype {model.get('dtype')}; "
        f"{_num(res.get('train_examples'))} training and {_num(res.get('validation_examples'))} validation "
        f"conversations, {_num(res.get('tokens'))} tokens, {_num(res.get('trainable_parameters'))} trainable "
        f"parameters, {_num(res.get('seconds'))} s"
    )
    lines.append(
        f"- Loss: validation {_num(res.get('initial_val_loss'))} -> {_num(res.get('final_val_loss'))} "
        f"(best {_num(res.get('best_val_loss'))}), final training loss {_num(res.get('final_train_loss'))}, "
        f"{_num(res.get('steps'))} steps{' (stopped early)' if res.get('stopped_early') else ''}"
    )
    training = cfg.get("training") or {}
    rows = [[k, _num(training.get(k))] for k in HYPERPARAMETERS if k in training]
    return [*lines, "", *_table(["hyper-parameter", "value"], rows)]


def _data(facts: VersionFacts) -> list[str]:
    if not facts.curates:
        return ["No curation run is in this model's lineage: its training data has no recorded provenance."]
    classes = {what: (lic, cls) for what, lic, cls in facts.licenses}
    lines = []
    for curate in facts.curates:
        res = CurateResult.of(curate)
        kept_by = res.kept_by_source
        rows = []
        for source in curate["config"].get("sources", []):
            sname = source.get("name") or source.get("path")
            lic, cls = classes.get(f"data source {sname}", (source.get("license"), "?"))
            rows.append([sname, source.get("path"), lic or "unknown", cls, _num(kept_by.get(sname))])
        lines += [f"Curation run `{curate['run_id']}`:", ""]
        lines += _table(["source", "path", "license", "policy", "records kept"], rows)
        dropped = ", ".join(f"{k} {v}" for k, v in res.quarantine_by_step.items()) or "none"
        pii = ", ".join(f"{k} {v}" for k, v in res.pii_counts.items()) or "none"
        splits = ", ".join(f"{k} {v}" for k, v in res.splits.items())
        lines += [
            "",
            f"- {_num(res.lines_read)} records read, {_num(res.kept)} kept, "
            f"{_num(res.quarantined)} quarantined (by step: {dropped})",
            f"- PII redacted: {pii}; splits: {splits}",
            "",
        ]
    return lines


def _evaluation(facts: VersionFacts) -> list[str]:
    s = facts.summary
    if s is None:
        return ["This version has not been evaluated."]
    models = s["models"]
    against = f" against **{models['baseline']['label']}**" if "baseline" in models else ""
    lines = [
        f"Eval run `{s['run_id']}`: **{s['verdict']}**{against}; config sha256 `{s['config_hash'][:16]}…`; "
        f"{round(s['confidence'] * 100)}% paired bootstrap intervals ({s['bootstrap']} resamples).",
        "",
    ]
    gates = [
        [g["metric"], g["rule"], g["tier"], g["status"], _ci(g.get("model")), _ci(g.get("difference"), True)]
        for g in s["gates"]
    ]
    if gates:
        lines += [*_table(["gate", "rule", "tier", "status", "model [CI]", "vs baseline [CI]"], gates), ""]
    rows = []
    for task in s["tasks"]:
        for m in task["metrics"]:
            rows.append(
                [f"{task['name']}.{m['name']}", str(task["items"]), _ci(m.get("model")), _ci(m.get("baseline"))]
            )
    return [*lines, *_table(["metric", "items", "model [CI]", "baseline [CI]"], rows)]


def _primary_metric(facts: VersionFacts, task: str) -> str | None:
    s = facts.summary or {}
    for g in s.get("gates", []):
        if g["metric"].startswith(f"{task}."):
            return g["metric"].partition(".")[2]
    for t in s.get("tasks", []):
        if t["name"] == task:
            higher = [m["name"] for m in t["metrics"] if m.get("higher_is_better")]
            return higher[0] if higher else None
    return None


def failure_modes(facts: VersionFacts, per_task: int) -> list[dict[str, Any]]:
    """The model's lowest-scoring items on each task's primary metric (gated, else the first), below the best."""
    found = []
    for task in dict.fromkeys(i["task"] for i in facts.items):
        metric = _primary_metric(facts, task)
        scored = [i for i in facts.items if i["task"] == task and metric and i["scores"].get(metric) is not None]
        if not scored:
            continue
        best = max(i["scores"][metric] for i in scored)
        worst = sorted((i for i in scored if i["scores"][metric] < best), key=lambda i: i["scores"][metric])
        found += [i | {"metric": metric} for i in worst[:per_task]]
    return found


def _failures(facts: VersionFacts, per_task: int) -> list[str]:
    items = failure_modes(facts, per_task)
    if facts.summary is None:
        return ["Unknown: this version has not been evaluated."]
    if not items:
        return ["No evaluated item scored below the best score of its task's primary metric."]
    rows = [
        [
            f"{i['task']}/{i['id']}",
            f"{i['metric']} {_num(i['scores'][i['metric']])}",
            i["question"],
            i["reference"],
            i["answer"],
        ]
        for i in items
    ]
    return _table(["item", "score", "question", "expected", "answer"], rows)


def model_card(facts: VersionFacts, card: CardConfig) -> str:
    """The Markdown model card of one export version."""
    r = facts.export.get("results", {})
    base = r.get("base_model") or {}
    base_license = next(((lic, cls) for what, lic, cls in facts.licenses if what.startswith("base model")), None)
    moves = [
        f"{m['alias']} since {m['at']} ({m['kind']} by {m['user']}{': ' + m['reason'] if m['reason'] else ''})"
        for m in facts.moves[-3:]
    ]
    lines = [
        f"# Model card: {facts.label}",
        "",
        f"Generated by `tunewright card` from the workspace registry; every figure below comes from a run record "
        f"(export `{facts.export.get('run_id')}`). Aliases: {', '.join(facts.aliases) or 'none'}.",
        *([f"Alias history: {'; '.join(moves)}."] if moves else []),
        *([f"Owner: {card.owner}."] if card.owner else []),
        "",
        "## Model",
        "",
        f"- Format: {r.get('format')}{' ' + r['gguf_type'] if r.get('gguf_type') else ''}, "
        f"exports/{facts.name}/v{facts.version}; sha256 of every file in its `manifest.json`",
        f"- Base model: `{base.get('name_or_path')}`"
        + (f" (content sha256 `{base['sha256'][:16]}…`)" if base.get("sha256") else "")
        + (f", license {base_license[0] or 'unknown'} ({base_license[1]} under the policy)" if base_license else ""),
        f"- Parity: {r.get('parity_prompts')} golden prompts answered "
        + (f"with {r['top1_agreement']:.1%} top-1 agreement" if r.get("top1_agreement") is not None else "identically")
        + (f"; also checked on {r['verified_with']['engine']}" if r.get("verified_with") else ""),
        *(f"- Warning: {w}" for w in r.get("warnings") or []),
        "",
        "## Intended use",
        "",
        card.intended_use or "Not stated: write `intended_use` in configs/card.yaml.",
        "",
        "Out of scope: " + (card.out_of_scope or "not stated (configs/card.yaml `out_of_scope`)."),
        "",
        "## Training",
        "",
        *(_method(facts.train) if facts.train else ["No training run is recorded for this export."]),
        "",
        "## Training data",
        "",
        *_data(facts),
        "## Evaluation",
        "",
        *_evaluation(facts),
        "",
        "## Known failure modes",
        "",
        "The evaluated items this model scored lowest on (each task's gated metric):",
        "",
        *_failures(facts, card.failure_items),
        "",
        "## Licenses",
        "",
        *_table(
            ["what", "license", "policy (configs/policy.yaml)"],
            [[w, lic or "unknown", c] for w, lic, c in facts.licenses],
        ),
        "",
    ]
    return "\n".join(lines)


def _metric_deltas(new: VersionFacts, old: VersionFacts, paired: dict[str, Any] | None) -> list[str]:
    if paired is not None:
        rows = [
            [f"{t['name']}.{m['name']}", _ci(m.get("baseline")), _ci(m.get("model")), _ci(m.get("difference"), True)]
            for t in paired["tasks"]
            for m in t["metrics"]
        ]
        return [
            f"Paired on the same items by eval `{paired['run_id']}` ({paired['verdict']}), v{new.version} against "
            f"v{old.version}:",
            "",
            *_table(["metric", f"v{old.version} [CI]", f"v{new.version} [CI]", "difference [CI]"], rows),
        ]
    if new.summary is None or old.summary is None:
        return ["No evaluation compares the two versions' metrics."]

    def values(s: dict[str, Any]) -> dict[str, dict[str, float]]:
        return {f"{t['name']}.{m['name']}": m["model"] for t in s["tasks"] for m in t["metrics"]}

    a, b = values(old.summary), values(new.summary)
    rows = [[k, _ci(a[k]), _ci(b[k]), f"{b[k]['value'] - a[k]['value']:+.3f}"] for k in a if k in b]
    return [
        f"Not paired: no eval ran v{new.version} against v{old.version}; each version's own newest eval "
        f"(`{old.summary['run_id']}`, `{new.summary['run_id']}`):",
        "",
        *_table(["metric", f"v{old.version} [CI]", f"v{new.version} [CI]", "change"], rows),
    ]


def _data_changes(new: VersionFacts, old: VersionFacts) -> list[str]:
    ids_new, ids_old = {c["run_id"] for c in new.curates}, {c["run_id"] for c in old.curates}
    if ids_new == ids_old:
        return ["- Data: the same curation run(s); the same training data."]
    lines = [f"- Data: curation {', '.join(sorted(ids_old)) or 'none'} -> {', '.join(sorted(ids_new)) or 'none'}"]
    src_old = {s.get("name"): s for c in old.curates for s in c["config"].get("sources", [])}
    src_new = {s.get("name"): s for c in new.curates for s in c["config"].get("sources", [])}
    for added in sorted(set(src_new) - set(src_old)):
        lines.append(f"  - source added: {added} ({src_new[added].get('license') or 'no license'})")
    for removed in sorted(set(src_old) - set(src_new)):
        lines.append(f"  - source removed: {removed}")
    kept_old = {k: v for c in old.curates for k, v in CurateResult.of(c).kept_by_source.items()}
    kept_new = {k: v for c in new.curates for k, v in CurateResult.of(c).kept_by_source.items()}
    for src in sorted(set(kept_old) & set(kept_new)):
        if kept_old[src] != kept_new[src]:
            lines.append(f"  - {src}: {kept_old[src]} -> {kept_new[src]} records kept")
    return lines


def _watch(new: VersionFacts, paired: dict[str, Any] | None) -> list[str]:
    lines = []
    s = paired or new.summary
    for g in (s or {}).get("gates", []):
        if g["status"] != "PASS":
            lines.append(f"- Gate {g['metric']} ({g['tier']}, {g['rule']}) is {g['status']}")
    if paired is not None:
        for t in paired["tasks"]:
            for m in t["metrics"]:
                d, sign = m.get("difference"), 1 if m.get("higher_is_better", True) else -1
                if not d or math.isnan(d["value"]):
                    continue
                if d["low"] < 0 < d["high"]:
                    lines.append(f"- {t['name']}.{m['name']}: the change is within noise ({_ci(d, True)})")
                elif (d["high"] if sign > 0 else -d["low"]) < 0:
                    lines.append(f"- {t['name']}.{m['name']} got worse: {_ci(d, True)}")
    for item in failure_modes(new, 2):
        lines.append(f"- Failure seen in eval: {item['task']}/{item['id']} ({item['question'][:80]})")
    for w in new.export.get("results", {}).get("warnings") or []:
        lines.append(f"- Export warning: {w}")
    for what, lic, cls in new.licenses:
        if cls != "allowed":
            lines.append(f"- License {lic or 'unknown'} of {what} is {cls.replace('_', ' ')} under the policy")
    return lines or ["- Nothing flagged by the gates, the intervals or the export checks."]


def release_notes(new: VersionFacts, old: VersionFacts | None, paired: dict[str, Any] | None) -> str:
    """Markdown release notes of `new` against `old` (the previous production version, if any)."""
    lines = [f"# Release notes: {new.label}", ""]
    if old is None:
        lines += [
            f"First release of {new.name}: no earlier version was in production. Compared with the base model "
            "in the model card.",
            "",
            "## What to watch after deployment",
            "",
            *_watch(new, None),
            "",
        ]
        return "\n".join(lines)
    new_run = new.train["run_id"] if new.train else "?"
    old_run = old.train["run_id"] if old.train else "?"
    config_rows = (
        [[k, _num(a), _num(b)] for k, a, b in diff_manifests(old.train, new.train)["config"]]
        if new.train and old.train
        else []
    )
    undo = f"To undo: `tunewright rollback {new.name} --to production`."
    if "production" not in new.aliases:
        undo = f"Not in production yet: `tunewright promote {new.name}@v{new.version} --to production`."
    replaces = "Replaces" if "production" in new.aliases else "Would replace"
    lines += [
        f"{replaces} {old.label} in production (training run `{old_run}` -> `{new_run}`). {undo}",
        "",
        "## What changed",
        "",
        *_data_changes(new, old),
        f"- Training config: {len(config_rows)} setting(s) changed" + (":" if config_rows else ""),
        "",
        *(_table(["setting", f"v{old.version}", f"v{new.version}"], config_rows) if config_rows else []),
        "",
        "## Metrics",
        "",
        *_metric_deltas(new, old, paired),
        "",
        "## What to watch after deployment",
        "",
        *_watch(new, paired),
        "",
    ]
    return "\n".join(lines)
