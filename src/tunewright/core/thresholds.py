"""What a breach of production's health is: the thresholds `monitor check` and serve's canary both apply.

Each field's docstring is its one-line description in `tunewright config show monitor` (and `serve`,
under `canary.thresholds`); null turns a check off.
"""

from __future__ import annotations

from pydantic import Field

from tunewright.core.config import StrictModel


class Thresholds(StrictModel):
    error_rate: float | None = Field(0.05, ge=0, le=1)
    """Share of requests that ended in an error, timeout or abort (5xx, 499) above which a window breaches."""
    p95_latency_s: float | None = Field(30.0, gt=0)
    """95th percentile of request latency (seconds) above which a window breaches."""
    refusal_rate_increase: float | None = Field(0.1, ge=0, le=1)
    """Refusal rate above the version's eval answers' by more than this: output drift."""
    answer_length_change: float | None = Field(0.5, ge=0)
    """Mean answer length off the version's eval answers' by more than this share: output drift."""
    json_validity: float | None = Field(0.95, ge=0, le=1)
    """Share of answers to JSON-format requests (stopped, or cut at max_tokens) that parse and match their schema,
    below which a window breaches."""
    tool_call_validity: float | None = Field(0.95, ge=0, le=1)
    """Share of tool calls naming a declared tool with schema-valid arguments below which a window breaches."""
    feedback_score: float | None = None
    """Mean feedback score below which a window breaches (null: not checked)."""
    input_drift: bool = True
    """Input drift against the training prompts breaches (against the previous window it is reported)."""
