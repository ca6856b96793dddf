"""Per served version and time window: traffic, latency, tokens, finish reasons, errors, refusals, answer
length, JSON and tool-call validity where requests asked for them, feedback.

Validity is judged as an eval scorer would: a JSON-format answer must parse (and match its
`json_schema`), whether it stopped by itself or was cut at max_tokens (a client cannot use a cut
object either; answers that failed or were abandoned are left out); a tool call must name a
declared tool and carry arguments that parse and match that tool's `parameters`. Refusals are
answers that open with the phrases assistants refuse with ("I can't", "I'm sorry, but", "As an AI"...).
Shadow answers (`shadow_of`) count for everything but latency: the engine paces them below
production's speed on purpose.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import jsonschema
import numpy as np

REFUSAL = re.compile(
    r"^\s*(I can(?:no|')t|I (?:am|'m) (?:not able|unable|sorry)|Sorry,? (?:but )?I|As an AI|I won't)", re.I
)
FAILED = {499, 500, 502, 503, 504}


def prompt_text(row: dict[str, Any]) -> str | None:
    """The last user message of a captured chat request (the prompt of a completion), as text."""
    request = row.get("request") or {}
    if "messages" in request:
        for message in reversed(request["messages"]):
            if message.get("role") == "user":
                return _text(message.get("content"))
        return None
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else None


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict)) or None
    return None


def answers(row: dict[str, Any]) -> list[str]:
    """The text of each captured choice that answered in text (tool calls are judged by `tool_validity`)."""
    response = row.get("response") or {}
    return [c.get("content") or c.get("text") or "" for c in response.get("choices", []) if not c.get("tool_calls")]


def is_refusal(text: str) -> bool:
    return bool(REFUSAL.match(text))


def json_validity(row: dict[str, Any]) -> list[bool]:
    """For a request that asked for JSON: whether each answer (stopped or cut at max_tokens) parses and matches
    its schema."""
    request = row.get("request") or {}
    fmt = request.get("response_format") or {}
    structured = request.get("structured_outputs") or {}
    schema = None
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    elif structured.get("json") is not None:
        schema = structured["json"] if isinstance(structured["json"], dict) else None
    elif fmt.get("type") != "json_object" and not structured.get("json_object"):
        return []
    out = []
    for choice in (row.get("response") or {}).get("choices", []):
        if choice.get("finish_reason") not in ("stop", "length"):
            continue
        out.append(_valid_json(choice.get("content") or choice.get("text") or "", schema))
    return out


def _valid_json(text: str, schema: dict | None) -> bool:
    try:
        value = json.loads(text)
        if schema is not None:
            jsonschema.validate(value, schema)
    except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return True


def tool_validity(row: dict[str, Any]) -> list[bool]:
    """For a request with tools: whether each call made names a declared tool with valid arguments."""
    request = row.get("request") or {}
    declared = {
        t["function"]["name"]: t["function"].get("parameters")
        for t in request.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
    }
    if not declared:
        return []
    out = []
    for choice in (row.get("response") or {}).get("choices", []):
        for call in choice.get("tool_calls") or []:
            function = call.get("function") or {}
            name = function.get("name")
            out.append(name in declared and _valid_json(function.get("arguments", ""), declared[name]))
    return out


def _quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def window_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one (served name, version, window) group of captured rows."""
    texts = [a for r in rows if r["status"] == 200 for a in answers(r)]
    json_checks = [ok for r in rows for ok in json_validity(r)]
    tool_checks = [ok for r in rows for ok in tool_validity(r)]
    scores = [f["score"] for r in rows for f in r.get("feedback", []) if f.get("score") is not None]
    timed = [r for r in rows if not (r.get("request") or {}).get("shadow_of")]  # a shadow runs at a slower pace
    totals = [r["total_s"] for r in timed if r["total_s"] is not None]
    ttfts = [r["ttft_s"] for r in timed if r["ttft_s"] is not None]
    pii: Counter = Counter()
    for r in rows:
        pii.update(r.get("pii") or {})
    finish: Counter = Counter()
    for r in rows:
        for choice in (r.get("response") or {}).get("choices", []):
            finish[choice.get("finish_reason") or "none"] += 1
    return {
        "requests": len(rows),
        "error_rate": sum(r["status"] in FAILED for r in rows) / len(rows) if rows else 0.0,
        "status": dict(Counter(str(r["status"]) for r in rows)),
        "finish_reasons": dict(finish),
        "latency_p50_s": _quantile(totals, 0.5),
        "latency_p95_s": _quantile(totals, 0.95),
        "ttft_p50_s": _quantile(ttfts, 0.5),
        "ttft_p95_s": _quantile(ttfts, 0.95),
        "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in rows),
        "completion_tokens": sum(r["completion_tokens"] or 0 for r in rows),
        "answer_chars_mean": _mean([len(t) for t in texts]),
        "refusal_rate": _mean([float(is_refusal(t)) for t in texts]),
        "json_checked": len(json_checks),
        "json_validity": _mean([float(ok) for ok in json_checks]),
        "tool_calls_checked": len(tool_checks),
        "tool_call_validity": _mean([float(ok) for ok in tool_checks]),
        "feedback": len(scores),
        "feedback_score_mean": _mean(scores),
        "workloads": len({r["workload"] for r in rows if r["workload"]}),
        "pii_found": dict(pii),
    }
