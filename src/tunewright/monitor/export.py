"""`tunewright monitor export WINDOW`: captured conversations back into data, as a curation source.

A capture window (one serving process's capture run) holds prompts, answers and the feedback
users sent. Chosen by that feedback, its conversations become a JSONL file under `data/raw/`
that `configs/curate.yaml` can list as a source:

- `kind: chat`: conversations whose feedback score reached `min_score`, with the answer given,
  and conversations with a correction, with the corrected answer in its place; with `judged_by`
  (a replay of the window whose suite has a judge), also those whose answer the judge scored at
  least `min_judge_score` (1-5) and no user scored below `min_score`;
- `kind: preference`: each answer that was corrected and not scored up becomes a pair, the
  correction chosen over the answer production gave.

Everything in the capture store was scrubbed of personal data before it was stored, so the
export holds nothing more. Each record says where it came from (`meta.origin: production`,
the window, the response id, the served version and the feedback). The export is a
`monitor-export` run whose parent is the capture window, so a model trained on it traces back
to the traffic; curation refuses such a file unless its source states a `usage_note`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tunewright.core import capture_store as store
from tunewright.core.errors import UserError
from tunewright.core.io import iter_jsonl
from tunewright.core.manifest import MANIFEST, load_manifest
from tunewright.core.runs import Run, find_run, start_run
from tunewright.core.workspace import resolve

STAGE = "monitor-export"


def _answer(choice: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.get("content") or choice.get("text") or ""}
    if choice.get("tool_calls"):
        message["tool_calls"] = choice["tool_calls"]
    return message


def _corrected(correction: Any) -> dict[str, Any]:
    """A correction as an assistant message: a message object as given, other JSON as its text."""
    if isinstance(correction, dict) and correction.get("role") == "assistant":
        return {k: v for k, v in correction.items() if k in ("role", "content", "tool_calls")}
    text = correction if isinstance(correction, str) else json.dumps(correction, ensure_ascii=False)
    return {"role": "assistant", "content": text}


def _feedback(row: dict[str, Any]) -> tuple[float | None, Any]:
    """The row's mean feedback score (None without one) and its latest correction (None without one)."""
    scores = [f["score"] for f in row["feedback"] if f.get("score") is not None]
    corrections = [f["correction"] for f in row["feedback"] if f.get("correction") is not None]
    return (sum(scores) / len(scores) if scores else None), (corrections[-1] if corrections else None)


def judge_scores(workspace: Path, ref: str, window: str) -> dict[str, float]:
    """The judge's score of production's answer per response id, from a replay of `window` (`--judged-by`)."""
    run_dir = find_run(workspace, ref)
    manifest = load_manifest(run_dir)
    replayed = (manifest.get("results") or {}).get("replay") or {}
    if manifest["stage"] != "eval" or replayed.get("window") != window:
        raise UserError(f"--judged-by {ref}: run {run_dir.name} is not a replay of window {window} (eval --replay)")
    scores = {
        row["id"]: row["scores"]["judge_score"]
        for row in (line.value for line in iter_jsonl(run_dir / "results.jsonl"))
        if row["role"] == "baseline" and (row.get("scores") or {}).get("judge_score") is not None
    }
    if not scores:
        raise UserError(
            f"--judged-by {ref}: its replay has no judge_score (configure a judge scorer in configs/eval.yaml)"
        )
    return scores


def select(
    rows: list[dict[str, Any]],
    kind: str,
    min_score: float,
    judged: dict[str, float] | None = None,
    min_judge_score: float = 4.0,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The records to export from captured chat rows, and why each was chosen (`judged`: the judge's scores of
    production's answers by response id)."""
    out: list[dict[str, Any]] = []
    why: Counter[str] = Counter()
    for row in rows:
        request, response = row.get("request") or {}, row.get("response") or {}
        choices = response.get("choices") or []
        if row["status"] != 200 or "messages" not in request or not choices:
            continue
        score, correction = _feedback(row)
        meta = {
            "origin": "production",
            "capture_window": row["window_id"],
            "response_id": row["id"],
            "served": row["model"],
            "version": row["version"],
            "feedback_score": score,
        }
        judge = (judged or {}).get(row["id"])
        if judge is not None:
            meta["judge_score"] = judge
        prompt = request["messages"]
        extra = {"tools": request["tools"]} if request.get("tools") else {}
        if kind == "preference":
            if correction is None or (score is not None and score >= min_score):
                continue
            pair = {"prompt": prompt, "chosen": [_corrected(correction)], "rejected": [_answer(choices[0])]}
            out.append({"id": row["id"], **pair, **extra, "meta": meta})
            why["corrected answer"] += 1
        elif correction is not None:
            out.append({"id": row["id"], "messages": [*prompt, _corrected(correction)], **extra, "meta": meta})
            why["corrected answer"] += 1
        elif score is not None and score >= min_score:
            out.append({"id": row["id"], "messages": [*prompt, _answer(choices[0])], **extra, "meta": meta})
            why[f"feedback score >= {min_score:g}"] += 1
        elif score is None and judge is not None and judge >= min_judge_score:
            out.append({"id": row["id"], "messages": [*prompt, _answer(choices[0])], **extra, "meta": meta})
            why[f"judge score >= {min_judge_score:g}"] += 1
    return out, why


def export_window(
    workspace: Path,
    store_path: Path,
    ref: str,
    kind: str,
    min_score: float,
    out: str | None,
    command: list[str],
    judged_by: str | None = None,
    min_judge_score: float = 4.0,
) -> Run:
    """Write the window's chosen conversations as a curation source; recorded as a `monitor-export` run (its
    parents: the window, and the replay whose judge scores chose conversations)."""
    window = store.resolve_window(workspace, ref, "WINDOW")
    rows = store.window_rows(store_path, window, "WINDOW")
    judged = judge_scores(workspace, judged_by, window) if judged_by else None
    records, why = select(rows, kind, min_score, judged, min_judge_score)
    if not records:
        wanted = "a correction" if kind == "preference" else f"a correction or a feedback score >= {min_score:g}"
        wanted += f" or a judge score >= {min_judge_score:g}" if judged and kind == "chat" else ""
        raise UserError(f"WINDOW {window}: none of its {len(rows)} captured requests has {wanted}")
    target = resolve(workspace, out or f"data/raw/production-{window}-{kind}.jsonl")
    params = {"window": window, "kind": kind, "min_score": min_score, "out": str(target)}
    if judged_by:
        params.update(judged_by=judged_by, min_judge_score=min_judge_score)
    with start_run(workspace, STAGE, command, params) as run:
        if (workspace / "runs" / window / MANIFEST).is_file():
            run.add_parent(window)
        if judged_by:
            run.add_parent(find_run(workspace, judged_by).name)
        with run.output_file(target).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        run.results.update(
            window=window,
            kind=kind,
            out=run.rel(target),
            captured=len(rows),
            exported=len(records),
            chosen_by=dict(why),
        )
    return run
