"""What a served version was trained and evaluated on, found through its lineage.

A captured row names the version that answered it (`exports/NAME/vN`, a training run, a model
directory). Its producing run's ancestors hold the training run (whose `data.train_path` split
holds the prompts the model learned from: the input-drift reference) and the eval run (whose
answers are the output-drift reference: length and refusals as evaluated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.manifest import load_manifest
from tunewright.core.runs import find_run, lineage
from tunewright.core.tools import parse_calls
from tunewright.core.workspace import resolve
from tunewright.monitor.windows import prompt_text


@dataclass
class Reference:
    """The training prompts and evaluated answers behind one served version (empty where there are none)."""

    version: str
    train_run: str | None = None
    train_path: str | None = None
    prompts: list[str] = field(default_factory=list)
    eval_run: str | None = None
    eval_answers: list[str] = field(default_factory=list)


def _user_prompt(record: dict[str, Any]) -> str | None:
    if "messages" in record:
        return prompt_text({"request": {"messages": record["messages"]}})
    return record.get("prompt") if isinstance(record.get("prompt"), str) else None


def reference_for(workspace: Path, version: str | None) -> Reference:
    """The lineage reference of a served version (nothing for a version with no recorded training)."""
    ref = Reference(version or "")
    if not version:
        return ref
    try:
        run = load_manifest(find_run(workspace, version))
    except UserError:
        return ref
    for _, manifest in lineage(workspace, run["run_id"]):
        if manifest["stage"] == "train" and ref.train_run is None:
            ref.train_run = manifest["run_id"]
            ref.train_path = (manifest.get("config") or {}).get("data", {}).get("train_path")
        if manifest["stage"] == "eval" and ref.eval_run is None:
            ref.eval_run = manifest["run_id"]
    if ref.train_path:
        path = resolve(workspace, ref.train_path)
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                text = _user_prompt(json.loads(line)) if line.strip() else None
                if text:
                    ref.prompts.append(text)
    if ref.eval_run:
        results = workspace / "runs" / ref.eval_run / "results.jsonl"
        if results.is_file():
            for line in results.read_text(encoding="utf-8").splitlines():
                item = json.loads(line)
                answer = item.get("answer")
                if item.get("role") == "model" and isinstance(answer, str) and not parse_calls(answer)[1]:
                    ref.eval_answers.append(answer)  # text answers, as `windows.answers` takes them
    return ref
