"""`tunewright eval --replay WINDOW`: the prompts production received, as an eval task.

A capture window's answered chat requests (scrubbed of personal data as stored) become items:
the prompt, the tools and response format the request carried, and production's answer as the
reference. The candidate and the version that served them (`NAME@production` at the time,
by default the version the window recorded) answer the same prompts, and the usual scorers,
paired intervals and gates apply:

- `replay`: every item; agreement with production's answer (`similar`: MiniLM cosine of the
  answers) and refusals (`over_refusal_rate` over items production answered), and the judge's
  score when the eval config has a judge;
- `replay_json`: requests that asked for JSON, answered under the same response format;
  `json_valid` against the schema (when every such request used the same one);
- `replay_tools`: requests that offered tools; whether the calls name the same tools with the
  same arguments as production's (`tool_name_accuracy`, `tool_args_f1`, `no_call_accuracy`).

The gates are `replay.gates` in `configs/eval.yaml`, written before any replay; a gate is left out
when the window has nothing it measures (no JSON requests, no judge, no production answer that
called a tool for the call metrics). The eval run's parent is the capture window.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tunewright.core import capture_store as store
from tunewright.core.errors import UserError
from tunewright.core.io import atomic_write
from tunewright.core.tools import parse_calls, written_reply
from tunewright.core.workspace import resolve
from tunewright.evaluate.config import (
    EvalConfig,
    GateConfig,
    JsonScorer,
    JudgeScorer,
    RefusalScorer,
    SimilarScorer,
    TaskConfig,
    ToolCallsScorer,
)

ITEMS_DIR = Path("data") / "replay"
JSON_TYPES = ("json_schema", "json_object")


def _kind(request: dict[str, Any]) -> str:
    if (request.get("response_format") or {}).get("type") in JSON_TYPES:
        return "json"
    return "tools" if request.get("tools") else "text"


def replay_items(rows: list[dict[str, Any]], version: str, limit: int | None) -> list[dict[str, Any]]:
    """Eval items from the window's answered chat requests to `version`, oldest first."""
    refusal = [re.compile(p, re.I) for p in RefusalScorer(type="refusal").patterns]
    items = []
    for row in rows:
        request, choices = row.get("request") or {}, (row.get("response") or {}).get("choices") or []
        messages = request.get("messages") or []
        if row["status"] != 200 or row["version"] != version or not choices:
            continue
        if not messages or messages[-1].get("role") != "user":
            continue
        answer = written_reply(choices[0])
        refused = not choices[0].get("tool_calls") and any(p.search(answer) for p in refusal)
        kind = _kind(request)
        item = {"id": row["id"], "source": kind, "messages": messages, "reference": answer}
        item["expect"] = "refuse" if refused else "answer"
        if request.get("tools"):
            item["tools"] = request["tools"]
        if kind == "json":
            item["response_format"] = request["response_format"]
        items.append(item)
    return items[:limit] if limit else items


def _schema(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The JSON schema every JSON item asked for, when they all asked for the same one (else None: any JSON)."""
    schemas = {
        json.dumps((i["response_format"].get("json_schema") or {}).get("schema"), sort_keys=True)
        for i in items
        if i["source"] == "json"
    }
    return json.loads(schemas.pop()) if len(schemas) == 1 else None


def replay_config(cfg: EvalConfig, items: list[dict[str, Any]], data: str) -> EvalConfig:
    """The eval config of a replay: the replay tasks the items call for, and the gates on them."""
    kinds = Counter(i["source"] for i in items)
    judge = next((s for t in cfg.tasks for s in t.scorers if isinstance(s, JudgeScorer)), None)
    scorers: list[Any] = [SimilarScorer(type="similar", threshold=cfg.replay.similar_threshold)]
    scorers.append(RefusalScorer(type="refusal"))
    if judge is not None:
        scorers.append(judge.model_copy(update={"mode": "score"}))
    tasks = [TaskConfig(name="replay", data=data, scorers=scorers)]
    if kinds["json"]:
        json_scorer = JsonScorer(type="json", json_schema=_schema(items))
        tasks.append(TaskConfig(name="replay_json", data=data, sources=["json"], scorers=[json_scorer]))
    if kinds["tools"]:
        tools = ToolCallsScorer(type="tool_calls")
        tasks.append(TaskConfig(name="replay_tools", data=data, sources=["tools"], scorers=[tools]))
    return cfg.model_copy(update={"tasks": tasks, "gates": [g for g in cfg.replay.gates if _applies(g, tasks, items)]})


def _applies(gate: GateConfig, tasks: list[TaskConfig], items: list[dict[str, Any]]) -> bool:
    """Whether the window has what a gate's metric is measured on: its task, a judge, items of its kind."""
    task, _, metric = gate.metric.partition(".")
    config = next((t for t in tasks if t.name == task), None)
    if config is None or (metric == "judge_score" and not any(isinstance(s, JudgeScorer) for s in config.scorers)):
        return False
    if task != "replay_tools":
        return True
    called = [bool(parse_calls(i["reference"])[1]) for i in items if i["source"] == "tools"]
    return any(not c for c in called) if metric == "no_call_accuracy" else any(called)


def prepare_replay(workspace: Path, cfg: EvalConfig, ref: str) -> tuple[str, str, EvalConfig, int]:
    """(window, production version, eval config, items) of a replay, its items written under `data/replay/`.
    Production is the version that answered most of the window's requests; only its requests are replayed."""
    window = store.resolve_window(workspace, ref, "--replay")
    rows = store.window_rows(resolve(workspace, cfg.replay.store), window, "--replay")
    served = Counter(r["version"] for r in rows if r["status"] == 200 and r["version"])
    if not served:
        raise UserError(f"--replay {window}: none of its captured requests was answered")
    version = served.most_common(1)[0][0]
    items = replay_items(rows, version, cfg.replay.max_items)
    if not items:
        raise UserError(f"--replay {window}: no answered chat request to {version} in that window")
    data = str(ITEMS_DIR / f"{window}.jsonl")
    with atomic_write(resolve(workspace, data)) as fh:
        fh.writelines(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    return window, version, replay_config(cfg, items, data), len(items)
