"""OpenTelemetry GenAI spans for captured requests, sent over OTLP/HTTP (`capture.otlp_endpoint`).

One span per captured request, named `{operation} {model}` with the GenAI semantic conventions'
attributes (operation, provider, request model and sampling settings, response id, finish reasons,
input and output tokens) and tunewright's own (served version, adapter, workload, capture window,
time to first token), timed from the request's arrival to its last token, status ERROR with
`error.type` for a failed request. Spans are built by capture's writer thread from the row as it
is stored, after PII removal, so they never hold what the store would not; the messages themselves
(`gen_ai.input.messages`, `gen_ai.output.messages`) go only with `capture.otlp_content: true`.
The OpenTelemetry SDK batches and exports them on its own thread; it is an extra
(`pip install 'tunewright[otel]'`), imported only when an endpoint is configured.
"""

from __future__ import annotations

import json
from typing import Any

from tunewright import __version__
from tunewright.core.errors import UserError

OPERATIONS = {"chat.completions": "chat", "completions": "text_completion"}
SAMPLING = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed"}


class GenAiSpans:
    """A tracer provider exporting to one OTLP/HTTP endpoint, and the span of each captured row."""

    def __init__(self, endpoint: str, content: bool) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise UserError(
                "capture.otlp_endpoint needs the OpenTelemetry SDK: pip install 'tunewright[otel]'"
            ) from None
        resource = Resource.create({"service.name": "tunewright", "service.version": __version__})
        self.tracers = TracerProvider(resource=resource)
        self.tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.tracers.get_tracer("tunewright.serve", __version__)
        self.content = content

    def emit(self, row: dict[str, Any]) -> None:
        """The span of one stored row (`core.capture_store.COLUMNS`, PII already removed)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        operation = OPERATIONS.get(row["route"], row["route"])
        start = int(row["ts"] * 1e9)
        end = start + int((row.get("total_s") or 0) * 1e9)
        span = self.tracer.start_span(
            f"{operation} {row['model']}", kind=SpanKind.SERVER, start_time=start, attributes=self.attributes(row)
        )
        if row["status"] >= 400:
            span.set_status(Status(StatusCode.ERROR, f"HTTP {row['status']}"))
        span.end(end_time=end)

    def attributes(self, row: dict[str, Any]) -> dict[str, Any]:
        """The span's attributes; None values are left out (OpenTelemetry drops them anyway, with a warning)."""
        request = row.get("request") or {}
        choices = (row.get("response") or {}).get("choices") or []
        values: dict[str, Any] = {
            "gen_ai.operation.name": OPERATIONS.get(row["route"], row["route"]),
            "gen_ai.provider.name": "tunewright",
            "gen_ai.request.model": row["model"],
            "gen_ai.response.model": row["model"],
            "gen_ai.response.id": row["id"],
            "gen_ai.usage.input_tokens": row.get("prompt_tokens"),
            "gen_ai.usage.output_tokens": row.get("completion_tokens"),
            "http.response.status_code": row["status"],
            "tunewright.model.version": row.get("version"),
            "tunewright.adapter": row.get("adapter"),
            "tunewright.workload": row.get("workload"),
            "tunewright.capture.window": row.get("window_id"),
            "tunewright.time_to_first_token_s": row.get("ttft_s"),
            "tunewright.stream": bool(row.get("stream")),
        }
        for key, name in SAMPLING.items():
            value = request.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[f"gen_ai.request.{name}"] = value
        reasons = [c["finish_reason"] for c in choices if c.get("finish_reason")]
        if reasons:
            values["gen_ai.response.finish_reasons"] = reasons
        if row["status"] >= 400:
            values["error.type"] = str(row["status"])
        if self.content:
            values["gen_ai.input.messages"] = json.dumps(request.get("messages") or request.get("prompt"))
            values["gen_ai.output.messages"] = json.dumps(choices)
        return {k: v for k, v in values.items() if v is not None}

    def close(self) -> None:
        """Export what is batched, then stop."""
        self.tracers.shutdown()
