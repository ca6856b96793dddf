"""The service layer between the HTTP routes and the engine: names, limits, results, streams.

A request's `model` picks what answers it: the served model's own name is the model as
exported (or the training run's adapter), and every loaded adapter answers under its name.
Each choice (`n`) is one engine request; events come from the engine thread through the
event loop (`call_soon_threadsafe`). A client that goes away cancels its requests at once,
so their slots are free for the next ones. Latencies and token counts go to the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from starlette.requests import Request

from tunewright.core.tools import ToolError, check_tools
from tunewright.engine import Completion, Engine, Output, SamplingParams, TokenLogprob, grammar
from tunewright.engine.grammar import GrammarError
from tunewright.serve.capture import Capture
from tunewright.serve.metrics import ServeMetrics
from tunewright.serve.protocol import (
    ChatCompletionRequest,
    ChatLogprobs,
    ChatTokenLogprob,
    CompletionLogprobs,
    NamedToolChoice,
    SamplingRequest,
    StructuredOutputs,
    TopLogprob,
)

DISCONNECT_POLL_S = 0.5


class ModelNotFound(Exception):
    """No served model or adapter has the requested name."""


class BadConstraint(ValueError):
    """A response format or structured output the engine cannot enforce (HTTP 400); `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def _tool_grammar(body: ChatCompletionRequest) -> Callable[[], grammar.Grammar] | None:
    """The grammar builder for a chat request's tool calls (None: it may not call any); a tool choice that
    cannot be met raises `BadConstraint`."""
    choice = body.tool_choice
    named = choice.function.name if isinstance(choice, NamedToolChoice) else None
    if not body.tools:
        if choice == "required" or named is not None:
            raise BadConstraint("tool_choice asks for a tool call, but the request has no tools", "tool_choice")
        return None
    try:
        functions = check_tools(body.tools)
    except ToolError as exc:
        raise BadConstraint(str(exc), "tools") from None
    if named is not None and named not in functions:
        raise BadConstraint(f"tool_choice names {named!r}, which is not one of the tools", "tool_choice")
    if choice == "none":
        return None
    chosen = {named: functions[named]} if named is not None else functions
    required = choice == "required" or named is not None
    return partial(grammar.tool_calls, chosen, required, body.parallel_tool_calls)


def _structured(so: StructuredOutputs) -> Callable[[], grammar.Grammar] | None:
    """The grammar builder for vLLM's `structured_outputs` (None: it asks for nothing)."""
    if so.json_ is not None:
        return partial(grammar.json_schema, so.json_)
    if so.json_object:
        return grammar.json_object
    if so.regex is not None:
        return partial(grammar.regex, so.regex)
    if so.grammar is not None:
        return partial(grammar.lark, so.grammar)
    return None


@dataclass
class Served:
    """What the server answers for: the main name and the adapters' names."""

    name: str
    root: str
    started: int = field(default_factory=lambda: int(time.time()))


class Service:
    def __init__(
        self,
        engine: Engine,
        served: Served,
        max_new_tokens: int,
        request_timeout_s: float | None,
        metrics: ServeMetrics,
    ) -> None:
        self.engine, self.served, self.cap = engine, served, max_new_tokens
        self.timeout, self.metrics = request_timeout_s, metrics
        self.capture: Capture | None = None
        self.shadow: Any = None  # a serve.shadow.Shadow when shadow.candidate is set
        self.canary: Any = None  # a serve.canary.Canary when canary.candidate is set
        self.token_text = lru_cache(maxsize=65536)(self._token_text)

    # ---- names ---------------------------------------------------------------------------------------------

    def adapter_for(self, model: str) -> str | None:
        """The engine adapter that answers `model` (None: the base)."""
        if model == self.served.name:
            return self.engine.default_adapter
        if model in self.engine.adapters and model != self.engine.default_adapter:
            return model
        raise ModelNotFound(model)

    def route(self, model: str, adapter: str | None) -> tuple[str | None, dict[str, Any] | None]:
        """The adapter that answers a request to `model` (the canary may send it to its candidate) and the routing
        decision to capture with it (None where no canary routes `model`)."""
        if self.canary is None:
            return adapter, None
        adapter, decision = self.canary.route(model, adapter)
        if decision is not None:
            self.metrics.canary.labels(decision["arm"]).inc()
        return adapter, decision

    def model_name(self, adapter: str | None) -> str:
        """The served name of an engine adapter (metrics labels)."""
        return self.served.name if not adapter or adapter == self.engine.default_adapter else adapter

    def load_by_model(self) -> dict[str, dict[str, int]]:
        """The engine's running / waiting counts under served names."""
        out: dict[str, dict[str, int]] = {}
        for key, counts in self.engine.stats().items():
            out[key] = {}
            for adapter, n in counts.items():
                name = self.model_name(adapter)
                out[key][name] = out[key].get(name, 0) + n
        return out

    # ---- running requests ----------------------------------------------------------------------------------

    def sampling(self, max_tokens: int | None, default: int, **kwargs: object) -> SamplingParams:
        """Sampling parameters with the server's cap on answer length and its request timeout."""
        limit = min(max_tokens if max_tokens is not None else default, self.cap)
        return SamplingParams(max_tokens=limit, timeout_s=self.timeout, **kwargs)  # type: ignore[arg-type]

    async def constraint(self, body: SamplingRequest) -> dict[str, Any]:
        """The engine's constraint for a request's tools, `response_format` or `structured_outputs` (`choices` or
        a checked `grammar`), as SamplingParams fields; an unenforceable one raises `BadConstraint`."""
        fmt, structured = body.response_format, body.structured_outputs
        build: Callable[[], grammar.Grammar] | None
        tools = _tool_grammar(body) if isinstance(body, ChatCompletionRequest) else None
        if tools is not None and ((fmt is not None and fmt.type != "text") or structured is not None):
            raise BadConstraint("tools cannot be combined with response_format or structured_outputs here", "tools")
        if tools is not None:
            param, build = "tools", tools
        elif structured is not None and structured.choice is not None:
            tokenizer = self.engine.tokenizer
            return {"choices": [tokenizer(c, add_special_tokens=False)["input_ids"] for c in structured.choice]}
        elif fmt is not None and fmt.type == "json_object":
            param, build = "response_format", grammar.json_object
        elif fmt is not None and fmt.json_schema is not None and fmt.type == "json_schema":
            param, build = "response_format", partial(grammar.json_schema, fmt.json_schema.schema_)
        elif structured is not None and (build := _structured(structured)) is not None:
            param = "structured_outputs"
        else:
            return {}
        try:
            built = build()
            await asyncio.to_thread(self.engine.grammars.check, built)
        except GrammarError as exc:
            raise BadConstraint(str(exc), param) from None
        return {"grammar": built}

    def start(
        self, prompts: list[list[int]], params: list[SamplingParams], adapter: str | None, http: Request
    ) -> list[RequestStream]:
        """Submit one engine request per (prompt, params); all or none (a refused one cancels the others)."""
        streams: list[RequestStream] = []
        try:
            for prompt, p in zip(prompts, params, strict=True):
                streams.append(RequestStream(self, prompt, p, adapter, http))
        except BaseException:
            for stream in streams:
                stream.handle.cancel()
            raise
        return streams

    def _count(self, model: str, out: Output, seconds: float) -> None:
        self.metrics.e2e.labels(model).observe(seconds)
        self.metrics.prompt_tokens.labels(model).inc(out.prompt_tokens)
        self.metrics.generation_tokens.labels(model).inc(out.completion_tokens)
        self.metrics.requests.labels(model, out.finish_reason or "").inc()

    # ---- shaping results -----------------------------------------------------------------------------------

    def _token_text(self, token_id: int) -> str:
        return self.engine.tokenizer.decode([token_id])

    def chat_logprobs(self, logprobs: list[TokenLogprob]) -> ChatLogprobs:
        """OpenAI chat `logprobs.content` entries for generated tokens."""
        content = []
        for lp in logprobs:
            text = self.token_text(lp.token_id)
            top = [
                TopLogprob(token=self.token_text(t), logprob=v, bytes=list(self.token_text(t).encode()))
                for t, v in lp.top
            ]
            content.append(
                ChatTokenLogprob(token=text, logprob=lp.logprob, bytes=list(text.encode()), top_logprobs=top)
            )
        return ChatLogprobs(content=content)

    def completion_logprobs(
        self,
        prompt_logprobs: list[TokenLogprob | None] | None,
        prompt: list[int],
        logprobs: list[TokenLogprob],
        start: int,
    ) -> CompletionLogprobs:
        """Legacy completions `logprobs`, prompt tokens first when echoed; offsets count from `start`."""
        out = CompletionLogprobs()
        offset = start
        entries: list[tuple[int, TokenLogprob | None]] = []
        if prompt_logprobs is not None:
            entries += list(zip(prompt, prompt_logprobs, strict=True))
        entries += [(lp.token_id, lp) for lp in logprobs]
        for token, lp in entries:
            text = self.token_text(token)
            out.tokens.append(text)
            out.text_offset.append(offset)
            offset += len(text)
            out.token_logprobs.append(lp.logprob if lp is not None else None)
            out.top_logprobs.append({self.token_text(t): v for t, v in lp.top} if lp is not None else None)
        return out


def finish_reason(reason: str | None) -> str | None:
    """OpenAI's finish reasons: stop and length pass; an aborted request reports `abort`."""
    return reason if reason in (None, "stop", "length") else "abort"


class RequestStream:
    """One submitted engine request, read as an async stream of outputs; cancelled if the client goes away."""

    def __init__(
        self,
        service: Service,
        prompt: list[int],
        params: SamplingParams,
        adapter: str | None,
        http: Request,
        every: int = 1,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Output] = asyncio.Queue()
        self.service, self.http, self.prompt = service, http, prompt
        self.model, self.adapter = service.model_name(adapter), adapter
        self.arrived, self.started = time.time(), time.perf_counter()
        self.ttft: float | None = None  # seconds, for capture
        self.queued: float | None = None
        self.total: float | None = None
        self.handle = service.engine.submit(
            prompt, params, lambda out: loop.call_soon_threadsafe(self.queue.put_nowait, out), adapter, every=every
        )

    async def __aiter__(self) -> AsyncIterator[Output]:
        metrics, model = self.service.metrics, self.model
        last, first, finished = self.started, True, False
        try:
            while True:
                try:
                    async with asyncio.timeout(DISCONNECT_POLL_S):  # no task per token, unlike wait_for
                        out = await self.queue.get()
                except TimeoutError:
                    if await self.http.is_disconnected():
                        return
                    continue
                now = time.perf_counter()
                if out.token_ids:
                    (metrics.ttft if first else metrics.itl).labels(model).observe(now - last)
                    if first:
                        self.ttft, self.queued = now - self.started, out.queued_s
                    first, last = False, now
                if out.finish_reason is not None:
                    finished, self.total = True, now - self.started
                    self.service._count(model, out, now - self.started)
                yield out
                if finished:
                    return
        finally:
            if not finished:  # the client went away: free the slot now, count it as aborted
                self.handle.cancel()
                metrics.requests.labels(model, "abort").inc()

    async def result(self) -> Completion | None:
        """The whole result (None if the client went away first)."""
        result = Completion()
        async for out in self:
            result.add(out)
        return result if result.finish_reason is not None else None
