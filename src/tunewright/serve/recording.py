"""What one served request leaves for capture: a row with the request, the answers and the timings.

A `Recorder` is made when a request is chosen for capture (the sample rate) and handed the
outcome once the answer is complete, streamed or not; it builds the row and queues it
(`serve/capture.py` removes PII and writes it, off the request path).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tunewright.engine import Completion
from tunewright.serve.capture import Capture
from tunewright.serve.protocol import SamplingRequest
from tunewright.serve.service import RequestStream


class Recorder:
    def __init__(
        self, capture: Capture, http: Request, route: str, response_id: str, body: SamplingRequest, stream: bool
    ) -> None:
        self.capture, self.route, self.response_id, self.stream = capture, route, response_id, stream
        self.workload = http.headers.get(capture.cfg.workload_header) or body.user
        self.request = body.model_dump(mode="json", exclude_none=True, by_alias=True)

    def done(
        self,
        streams: list[RequestStream],
        results: list[Completion | None],
        choices: list[dict[str, Any]],
        status: int,
    ) -> None:
        """Queue the row of a finished (or failed, or abandoned) request."""
        first = streams[0]
        finished = [r for r in results if r is not None]
        reasons = {c.get("finish_reason") for c in choices} - {None}
        self.capture.record(
            {
                "id": self.response_id,
                "ts": first.arrived,
                "route": self.route,
                "model": first.model,
                "adapter": first.adapter,
                "workload": self.workload,
                "status": status,
                "finish_reason": ",".join(sorted(reasons)) or None,
                "stream": int(self.stream),
                "prompt_tokens": finished[0].prompt_tokens if finished else None,
                "completion_tokens": sum(r.completion_tokens for r in finished) if finished else None,
                "queue_s": first.queued,
                "ttft_s": first.ttft,
                "total_s": max((s.total for s in streams if s.total is not None), default=None),
                "request": self.request,
                "response": {"choices": choices},
            }
        )
