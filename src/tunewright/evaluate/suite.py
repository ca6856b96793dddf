"""Eval tasks: conversations whose last assistant turn is the reference answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import RecordError, to_conversation
from tunewright.core.workspace import resolve
from tunewright.evaluate.config import EvalConfig


@dataclass
class Task:
    name: str
    path: Path
    ids: list[str]
    prompts: list[list[dict[str, str]]]
    references: list[str]


def load_task(name: str, path: Path) -> Task:
    """Read a task file; every item must be a conversation ending in an assistant answer."""
    ids, prompts, refs = [], [], []
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        try:
            conv = to_conversation(obj, name, f"{name}:{i}")
        except RecordError as exc:
            raise DataError(f"{path}:{i}: {exc}") from None
        if conv.messages[-1].role != "assistant":
            raise DataError(f"{path}:{i}: the last message must be the reference assistant answer")
        ids.append(conv.id)
        prompts.append([{"role": m.role, "content": m.content} for m in conv.prompt_messages()])
        refs.append(conv.final_answer())
    if not ids:
        raise DataError(f"{path}: eval task {name!r} has no items")
    return Task(name, path, ids, prompts, refs)


def load_tasks(cfg: EvalConfig, workspace: Path) -> list[Task]:
    return [load_task(t.name, resolve(workspace, t.data)) for t in cfg.tasks]
