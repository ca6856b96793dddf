"""Eval items: what a generate task asks, what it expects back, and the checks on each answer.

An item is either a conversation whose last assistant turn is the reference answer (the
shape of the curated splits), or a prompt-only item (`prompt` text or a `messages` list
ending in a user turn). Either may carry `assert` (a list of checks on the answer),
`expect` (`refuse` or `answer`, for the refusal scorer) and `label` (the class, for the
classification scorer). Everything a scorer needs is checked here, at load time, so a bad
line is reported as file:line before any generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import RecordError, parse_messages, parse_tools, to_conversation, to_preference_pair
from tunewright.evaluate.config import Assertion, TaskConfig

NEEDS_REFERENCE = {"fields", "exact_match", "token_f1", "rouge", "bleu", "chrf", "nll", "similar", "tool_calls"}
_ASSERTIONS = TypeAdapter(list[Assertion])


@dataclass
class Item:
    id: str
    prompt: list[dict[str, Any]]
    reference: str | None = None  # with tool calls, as the model writes them (core/tools.call_text)
    assertions: list[Assertion] = field(default_factory=list)
    expect: str | None = None
    label: str | None = None
    rejected: str | None = None  # a preference pair's rejected answer (`reference` holds the chosen one)
    tools: list[dict[str, Any]] = field(default_factory=list)  # the tools the model may call (OpenAI's shape)
    response_format: dict[str, Any] | None = None  # json_schema / json_object: the answer is constrained to it

    @property
    def question(self) -> str:
        """The last user message (what a reviewer reads first)."""
        return next((m["content"] for m in reversed(self.prompt) if m["role"] == "user"), "")


@dataclass
class Task:
    config: TaskConfig
    path: Path
    items: list[Item]

    @property
    def name(self) -> str:
        return self.config.name


def _prompt_only(obj: dict[str, Any], tools: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if "messages" in obj:
        messages = parse_messages(obj["messages"], "messages", tools)
    elif "prompt" in obj:
        messages = parse_messages(obj["prompt"], "prompt", tools)
    else:
        raise RecordError(f"expected 'messages' or 'prompt', found {', '.join(sorted(obj)) or 'no keys'}")
    if messages[-1].role != "user":
        raise RecordError("a prompt-only item must end with a user message")
    return [m.to_dict() for m in messages]


def parse_item(obj: Any, task: TaskConfig, default_id: str) -> Item:
    """One item from one JSON line; `RecordError` names what is wrong with it."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, found {type(obj).__name__}")
    messages = obj.get("messages")
    ends_in_answer = isinstance(messages, list) and messages and (messages[-1] or {}).get("role") == "assistant"
    if "chosen" in obj and "rejected" in obj:
        pair = to_preference_pair(obj, task.name, default_id)
        if len(pair.chosen) != 1 or len(pair.rejected) != 1:
            raise RecordError("an eval preference pair has one chosen and one rejected answer message")
        item = Item(pair.id, [{"role": m.role, "content": m.content} for m in pair.prompt])
        item.reference, item.rejected = pair.chosen[0].content, pair.rejected[0].content
    elif ends_in_answer or ("prompt" in obj and "response" in obj):
        conv = to_conversation(obj, task.name, default_id)
        if conv.messages[-1].role != "assistant":
            raise RecordError("the last message must be the reference assistant answer")
        item = Item(conv.id, [m.to_dict() for m in conv.prompt_messages()], tools=conv.tools)
        item.reference = conv.messages[-1].text()
    else:
        tools, by_name = parse_tools(obj["tools"]) if obj.get("tools") else ([], {})
        item = Item(str(obj.get("id", default_id)), _prompt_only(obj, by_name), tools=tools)
        if "reference" in obj:
            if not isinstance(obj["reference"], str):
                raise RecordError("reference must be a string")
            item.reference = obj["reference"]
    try:
        item.assertions = _ASSERTIONS.validate_python(obj.get("assert", []))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordError(f"assert[{where}]: {first['msg']}") from None
    fmt = obj.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object", "text")):
        raise RecordError("response_format must be an object of type json_schema, json_object or text")
    item.response_format = fmt if fmt and fmt.get("type") != "text" else None
    expect = obj.get("expect")
    if expect is not None and expect not in ("refuse", "answer"):
        raise RecordError(f"expect must be 'refuse' or 'answer', found {expect!r}")
    item.expect = expect
    if "label" in obj:
        item.label = str(obj["label"])
    _check_needs(item, task)
    return item


def _check_needs(item: Item, task: TaskConfig) -> None:
    for scorer in task.scorers:
        if scorer.type in NEEDS_REFERENCE and item.reference is None:
            raise RecordError(f"scorer {scorer.type!r} needs a reference answer; this item has none")
        if scorer.type == "json" and scorer.fields and item.reference is None:
            raise RecordError("scorer 'json' with fields needs a reference answer; this item has none")
        if scorer.type == "tool_calls" and not item.tools:
            raise RecordError("scorer 'tool_calls' needs `tools` on every item")
        if scorer.type == "preference" and item.rejected is None:
            raise RecordError("scorer 'preference' needs {prompt, chosen, rejected} pairs; this item is not one")
        if scorer.type == "refusal" and item.expect is None:
            raise RecordError("scorer 'refusal' needs `expect: refuse|answer` on every item")
        if scorer.type == "classification":
            label = item.label if item.label is not None else item.reference
            if label is None:
                raise RecordError("scorer 'classification' needs a `label` or a reference answer")
            if label.strip() not in scorer.labels:
                raise RecordError(f"label {label.strip()!r} is not one of {scorer.labels}")


def load_task(task: TaskConfig, path: Path) -> Task:
    """Read a task's items (those of its `sources`, when it names some); any unusable line is a `DataError`
    naming file:line."""
    items = []
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        if task.sources is not None and (not isinstance(obj, dict) or obj.get("source") not in task.sources):
            continue
        try:
            items.append(parse_item(obj, task, f"{task.name}:{i}"))
        except RecordError as exc:
            raise DataError(f"{path}:{i}: {exc}") from None
    if not items:
        only = f" from the sources {', '.join(task.sources)}" if task.sources is not None else ""
        raise DataError(f"{path}: eval task {task.name!r} has no items{only}")
    ids = [it.id for it in items]
    if len(ids) != len(set(ids)):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: item id {dup!r} appears more than once (per-item results are keyed by id)")
    return Task(task, path, items)
