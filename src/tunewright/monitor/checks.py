"""The monitor's threshold checks on a group of captured requests, for `monitor check` and serve's canary.

`stat_checks` compares one group's figures (`windows.window_stats`) with the absolute limits:
error rate and p95 latency above, JSON / tool-call validity and mean feedback below.
`drift_checks` compares answers with a reference set of answers (the version's eval answers for
`monitor`, production's answers in the same window for a canary): answer length off by more
than a share, refusal rate up by more than a margin.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tunewright.core.thresholds import Thresholds
from tunewright.monitor.windows import window_stats


class Check(NamedTuple):
    """A failed check: which figure, its value, the limit and how it was crossed."""

    check: str
    value: float
    threshold: float | bool
    rule: str

    def describe(self) -> str:
        return f"{self.check} {self.value:.3g} {self.rule} {self.threshold}"


def stat_checks(stats: dict[str, Any], t: Thresholds) -> list[Check]:
    """The absolute thresholds `stats` (one group's `window_stats`) crosses."""
    out = []
    for key, limit in (("error_rate", t.error_rate), ("latency_p95_s", t.p95_latency_s)):
        if limit is not None and stats[key] is not None and stats[key] > limit:
            out.append(Check(key, stats[key], limit, "above"))
    below = (
        ("json_validity", t.json_validity),
        ("tool_call_validity", t.tool_call_validity),
        ("feedback_score_mean", t.feedback_score),
    )
    for key, limit in below:
        if limit is not None and stats[key] is not None and stats[key] < limit:
            out.append(Check(key, stats[key], limit, "below"))
    return out


def drift_checks(length_change: float | None, refusal_rise: float | None, t: Thresholds) -> list[Check]:
    """The output-drift thresholds crossed by an answer-length change (a share) and a refusal-rate rise."""
    out = []
    if t.answer_length_change is not None and length_change is not None and length_change > t.answer_length_change:
        out.append(Check("answer_length_change", length_change, t.answer_length_change, "above"))
    if t.refusal_rate_increase is not None and refusal_rise is not None and refusal_rise > t.refusal_rate_increase:
        out.append(Check("refusal_rate_increase", refusal_rise, t.refusal_rate_increase, "above"))
    return out


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests answered in free text: no response format, no structured output, no tools."""
    shaped = ("response_format", "structured_outputs", "tools")
    return [r for r in rows if not any((r.get("request") or {}).get(k) for k in shaped)]


def canary_breaches(candidate: list[dict[str, Any]], production: list[dict[str, Any]], t: Thresholds) -> list[Check]:
    """The thresholds a canary's candidate crosses on its captured requests: the absolute ones on its own figures;
    answer length and refusal rate against production's, on free-text requests only (a JSON object's length says
    nothing of a text answer's, and random routing can give one arm more of either)."""
    found = stat_checks(window_stats(candidate), t)
    ours, theirs = _plain(candidate), _plain(production)
    if not ours or not theirs:
        return found
    mine, base = window_stats(ours), window_stats(theirs)
    if base["answer_chars_mean"] and mine["answer_chars_mean"] is not None:
        change = abs(mine["answer_chars_mean"] / base["answer_chars_mean"] - 1)
        rise = None
        if mine["refusal_rate"] is not None and base["refusal_rate"] is not None:
            rise = mine["refusal_rate"] - base["refusal_rate"]
        found += drift_checks(change, rise, t)
    return found
