"""Scores for structured answers: JSON against a schema and a reference object, tool calls against the reference's.

Answers are text. A local model's calls are in its answer as it wrote them (Hermes' `<tool_call>` blocks), and
an endpoint target writes the `tool_calls` of its replies back into that form, so one parser reads both
(`core/tools.parse_calls`) and a reference answer is read the same way.

- `json`: `json_valid` (the answer is JSON, inside a Markdown fence or not, and matches the scorer's schema
  when one is given); per field path (`severity`, `owner.team`, `tables[0]`) `json_<path>` is 1 where the
  answer's value equals the reference's (strings compared after the scorer's normalisation); and
  `json_field_accuracy`, the share of the reference's fields an answer gets right. A field the reference lacks
  is not counted for that item.
- `tool_calls`: over items whose reference makes calls, `tool_name_accuracy` (the same functions called, as a
  multiset), `tool_call_exact` (the same calls, names and arguments) and `tool_args_f1` (F1 over the
  (function, argument path, value) leaves of all calls); over items whose reference makes none,
  `no_call_accuracy` (the answer makes none either).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import jsonschema

from tunewright.core.tools import parse_calls
from tunewright.evaluate.stats import Metric, mean_metric

_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S)
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


def metric_suffix(path: str) -> str:
    """A field path as part of a metric name: lower-case letters, digits and `_`."""
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def parse_json(text: str) -> Any:
    """The JSON value of an answer (a Markdown code fence around it is allowed); `_MISSING` when it is not JSON."""
    text = text.strip()
    fence = _FENCE.fullmatch(text)
    try:
        return json.loads(fence.group(1) if fence else text)
    except ValueError:
        return _MISSING


def value_at(obj: Any, path: str) -> Any:
    """The value at a dotted path with list indexes (`owner.team`, `tables[0].name`); `_MISSING` if absent."""
    for name, index in _STEP.findall(path):
        if name and isinstance(obj, dict) and name in obj:
            obj = obj[name]
        elif index and isinstance(obj, list) and int(index) < len(obj):
            obj = obj[int(index)]
        else:
            return _MISSING
    return obj


def _same(answer: Any, reference: Any, normalise: Any) -> bool:
    if isinstance(answer, str) and isinstance(reference, str):
        return normalise(answer) == normalise(reference)
    return answer == reference and type(answer) is type(reference)


def json_metrics(
    answers: list[str], references: list[str], schema: dict[str, Any] | None, fields: list[str], normalise: Any
) -> list[Metric]:
    """`json_valid`, then per field `json_<path>` and `json_field_accuracy` (see the module docstring)."""
    validator = jsonschema.validators.validator_for(schema)(schema) if schema is not None else None
    valid, per_field, accuracy = [], {path: [] for path in fields}, []
    for answer, reference in zip(answers, references, strict=True):
        got, want = parse_json(answer), parse_json(reference)
        valid.append(float(got is not _MISSING and (validator is None or validator.is_valid(got))))
        hits = []
        for path in fields:
            expected = value_at(want, path) if want is not _MISSING else _MISSING
            if expected is _MISSING:
                per_field[path].append(None)
                continue
            actual = value_at(got, path) if got is not _MISSING else _MISSING
            hit = float(actual is not _MISSING and _same(actual, expected, normalise))
            per_field[path].append(hit)
            hits.append(hit)
        accuracy.append(sum(hits) / len(hits) if hits else None)
    out = [mean_metric("json_valid", valid)]
    if fields:
        out += [mean_metric(f"json_{metric_suffix(p)}", per_field[p]) for p in fields]
        out.append(mean_metric("json_field_accuracy", accuracy))
    return out


def _leaves(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, value as canonical JSON) of every leaf of an arguments object."""
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{path}.{k}")]
    if isinstance(value, list) and value:
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, json.dumps(value, sort_keys=True))]


def _f1(answer: Counter, reference: Counter) -> float:
    common = sum((answer & reference).values())
    if not common:
        return 0.0
    precision, recall = common / sum(answer.values()), common / sum(reference.values())
    return 2 * precision * recall / (precision + recall)


def tool_call_metrics(answers: list[str], references: list[str]) -> list[Metric]:
    """`tool_name_accuracy`, `tool_call_exact`, `tool_args_f1` and `no_call_accuracy` (see the module docstring)."""
    names, exact, f1, no_call = [], [], [], []
    for answer, reference in zip(answers, references, strict=True):
        made, wanted = parse_calls(answer)[1], parse_calls(reference)[1]
        if not wanted:
            no_call.append(float(not made))
            for values in (names, exact, f1):
                values.append(None)
            continue
        no_call.append(None)
        names.append(float(Counter(c.name for c in made) == Counter(c.name for c in wanted)))
        canonical = Counter((c.name, json.dumps(c.arguments, sort_keys=True)) for c in made)
        exact.append(float(canonical == Counter((c.name, json.dumps(c.arguments, sort_keys=True)) for c in wanted)))
        leaves = Counter((c.name, *leaf) for c in made for leaf in _leaves(c.arguments))
        f1.append(_f1(leaves, Counter((c.name, *leaf) for c in wanted for leaf in _leaves(c.arguments))))
    return [
        mean_metric("tool_name_accuracy", names),
        mean_metric("tool_call_exact", exact),
        mean_metric("tool_args_f1", f1),
        mean_metric("no_call_accuracy", no_call),
    ]
