"""Shadow traffic: a candidate adapter answers a share of production's chat requests, and nobody sees it.

For a mirrored request the candidate gets the same prompt and sampling settings (one choice) as
a request of its own, detached from the client: it is not cancelled when the client goes, and
its answer is never returned. Once it finishes, its row goes to the capture store beside
production's, with `shadow_of` naming the production response, so `monitor`, replay and review
can compare the two. At most `max_inflight` shadow requests generate at once; a request that
finds them all busy is simply not mirrored (`tunewright_shadow_requests_total{outcome="busy"}`),
which bounds what the shadow takes from production however busy production is. While production
requests run, a shadow request advances in `pace` of the engine's steps (background work,
`Engine.submit(every=...)`): one adapter row makes a whole batch step dearer, and this spreads that
cost thin; with production idle it advances every step. Its captured timings are therefore not the
candidate's speed, and the monitor leaves shadow rows out of latency. Each shadow slot
has a KV-cache slot of its own beyond `batching.max_num_seqs` (`ServeConfig.engine_config`), so a
shadow request does not hold back a production request waiting for a slot; a full engine queue
refuses the shadow request, never production's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from tunewright.engine import Completion
from tunewright.engine.params import SamplingParams
from tunewright.engine.requests import EngineClosed, QueueFull
from tunewright.serve.config import ShadowConfig
from tunewright.serve.protocol import ChatCompletionRequest
from tunewright.serve.recording import Recorder
from tunewright.serve.service import RequestStream, Service

ROUTE = "chat.completions.shadow"


class _Detached:
    """The client of a shadow request: there is none to lose."""

    async def is_disconnected(self) -> bool:
        return False


class Shadow:
    """Mirrors a share of one served name's chat requests to the candidate adapter."""

    def __init__(self, cfg: ShadowConfig, served_name: str) -> None:
        self.cfg, self.name = cfg, cfg.name or served_name
        self.inflight = 0
        self._tasks: set[asyncio.Task] = set()

    def mirror(
        self,
        service: Service,
        http: Request,
        body: ChatCompletionRequest,
        prompt: list[int],
        params: SamplingParams,
        response_id: str,
        choice: Callable[[Completion], dict[str, Any]],
    ) -> None:
        """Start the candidate on this request if it is one to mirror and a shadow slot is free."""
        if body.model != self.name or service.capture is None or random.random() >= self.cfg.share:
            return
        counter = service.metrics.shadow
        if self.inflight >= self.cfg.max_inflight:
            counter.labels("busy").inc()
            return
        try:
            stream = RequestStream(
                service,
                prompt,
                params,
                self.cfg.candidate,
                _Detached(),  # type: ignore[arg-type]
                every=max(1, round(1 / self.cfg.pace)),
            )
        except (QueueFull, EngineClosed):  # production's request is in; the shadow's is simply not made
            counter.labels("busy").inc()
            return
        self.inflight += 1
        recorder = Recorder(service.capture, http, ROUTE, f"{response_id}-shadow", body, False)
        recorder.request["shadow_of"] = response_id
        task = asyncio.create_task(self._answer(stream, recorder, choice, counter))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, stream: RequestStream, recorder: Recorder, choice: Callable, counter: Any) -> None:
        try:
            result = await stream.result()
            finished = result is not None and result.finish_reason not in ("error", "timeout")
            recorder.done([stream], [result], [choice(result)] if result is not None else [], 200 if finished else 500)
            counter.labels("answered" if finished else "failed").inc()
        finally:
            self.inflight -= 1
