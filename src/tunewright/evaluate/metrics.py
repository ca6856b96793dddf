"""Answer metrics: format compliance, field-level content accuracy, token F1, exact match.

Each function scores one (answer, reference) pair; `score_task` averages them. Field
accuracy extracts the configured fields (one regex capture each) from the answer and the
reference and counts a field right only when both extract the same normalised value.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def exact_match(answer: str, reference: str) -> float:
    return float(_norm(answer) == _norm(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 between answer and reference."""
    a, r = _WORD.findall(answer.lower()), _WORD.findall(reference.lower())
    if not a or not r:
        return float(a == r)
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def format_ok(answer: str, pattern: re.Pattern[str]) -> float:
    return float(pattern.fullmatch(answer.strip()) is not None)


def field_hits(answer: str, reference: str, fields: dict[str, re.Pattern[str]]) -> dict[str, float]:
    """Per field: 1.0 when the answer's extracted value equals the reference's."""
    hits = {}
    for name, pattern in fields.items():
        want = pattern.search(reference)
        got = pattern.search(answer)
        hits[name] = float(bool(want and got and _norm(want.group(1)) == _norm(got.group(1))))
    return hits


def score_task(
    answers: list[str], references: list[str], format_regex: str | None, fields: dict[str, str]
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Task-level means and per-example scores."""
    fmt = re.compile(format_regex) if format_regex else None
    compiled = {k: re.compile(v) for k, v in fields.items()}
    rows = []
    for answer, ref in zip(answers, references, strict=True):
        row = {"exact_match": exact_match(answer, ref), "token_f1": token_f1(answer, ref)}
        if fmt is not None:
            row["format_rate"] = format_ok(answer, fmt)
        if compiled:
            hits = field_hits(answer, ref, compiled)
            row.update({f"field_{k}": v for k, v in hits.items()})
            row["field_accuracy"] = sum(hits.values()) / len(hits)
        rows.append(row)
    means = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} if rows else {}
    return means, rows
