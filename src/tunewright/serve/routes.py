"""Thin HTTP routes: validate, hand to the service, shape the OpenAI response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from tunewright.core.tools import CallStream, ToolError, parse_calls
from tunewright.engine import Completion
from tunewright.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ErrorBody,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    LoadAdapterRequest,
    ModelCard,
    ModelList,
    SamplingRequest,
    UnloadAdapterRequest,
    Usage,
    new_id,
    now,
)
from tunewright.serve.recording import Recorder
from tunewright.serve.service import RequestStream, Service, finish_reason

router = APIRouter()
CLIENT_GONE = 499  # nginx's code for a client that closed the connection before the answer


class NotReady(Exception):
    """The model is still loading or warming up, or the server is shutting down (503)."""


def error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


def service_of(request: Request) -> Service:
    service = request.app.state.service
    if service is None or not request.app.state.ready:
        raise NotReady("the model is loading" if not request.app.state.closing else "the server is shutting down")
    return service


# ---- operations ----------------------------------------------------------------------------------------------


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/health/live")
def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/v1/health/ready", response_model=None)
def ready(request: Request) -> dict[str, str] | JSONResponse:
    state = request.app.state
    if state.ready and not state.closing:
        return {"status": "ready"}
    return error(503, "the model is loading" if not state.closing else "shutting down", "service_unavailable")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
def list_models(request: Request) -> ModelList:
    service = service_of(request)
    served = service.served
    cards = [ModelCard(id=served.name, created=served.started, root=served.root)]
    for name in service.engine.adapters:
        if name != service.engine.default_adapter:
            cards.append(ModelCard(id=name, created=served.started, root=name, parent=served.name))
    return ModelList(data=cards)


@router.post("/v1/load_lora_adapter", response_model=None)
async def load_adapter(body: LoadAdapterRequest, request: Request) -> Response:
    service = service_of(request)
    if body.lora_name == service.served.name:
        return error(400, f"{body.lora_name!r} is the served model's name", param="lora_name")
    path = Path(body.lora_path)
    if not (path / "adapter_config.json").is_file():
        return error(400, f"no PEFT adapter at {body.lora_path} (adapter_config.json)", param="lora_path")
    try:
        await asyncio.to_thread(service.engine.add_adapter, body.lora_name, path)
    except ValueError as exc:
        return error(400, str(exc), param="lora_name")
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@router.post("/v1/unload_lora_adapter", response_model=None)
async def unload_adapter(body: UnloadAdapterRequest, request: Request) -> Response:
    service = service_of(request)
    if body.lora_name == service.engine.default_adapter or not await asyncio.to_thread(
        service.engine.remove_adapter, body.lora_name
    ):
        return error(404, f"no loaded adapter {body.lora_name!r}", param="lora_name", code="model_not_found")
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")


@router.post("/v1/feedback", response_model=None)
async def feedback(body: FeedbackRequest, request: Request) -> Response | FeedbackResponse:
    """A score, comment or correction for a captured response, joined to it in the capture store."""
    capture = request.app.state.capture
    if capture is None:
        return error(404, "this server does not capture requests (capture.enabled), so it takes no feedback")
    if not await capture.feedback(body.id, body.model_dump(exclude={"id"}, exclude_none=True)):
        return error(404, f"no captured response has the id {body.id!r}", param="id", code="response_not_found")
    return FeedbackResponse(id=body.id)


# ---- generation -----------------------------------------------------------------------------------------------


def _failed(results: list[Completion | None]) -> Response | None:
    """The response for a request that did not finish normally, or None."""
    if any(r is None for r in results):
        return Response(status_code=CLIENT_GONE)
    for r in results:
        assert r is not None
        if r.finish_reason == "timeout":
            return error(504, "the request took longer than the server's request timeout", "timeout")
        if r.finish_reason == "error":
            return error(500, f"generation failed: {r.error}", "server_error")
    return None


def _usage(results: list[Completion]) -> Usage:
    prompt = sum(r.prompt_tokens for r in results[:1]) if results else 0
    completion = sum(r.completion_tokens for r in results)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _merged(streams: list[RequestStream]) -> AsyncIterator[tuple[int, object]]:
    """(choice index, output) from several streams as they arrive."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: RequestStream) -> None:
        async for out in stream:
            await queue.put((i, out))
        await queue.put((i, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_streams = len(tasks)
        while open_streams:
            i, out = await queue.get()
            if out is None:
                open_streams -= 1
            else:
                yield i, out
    finally:
        for task in tasks:
            task.cancel()


def _sse(data: object) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response | ChatCompletionResponse:
    service = service_of(request)
    adapter, routing = service.route(body.model, service.adapter_for(body.model))
    constraint = await service.constraint(body)
    try:
        prompt = service.engine.chat_prompt([m.for_template() for m in body.messages], body.tools)
    except ToolError as exc:
        return error(400, str(exc), param="tools" if body.tools else "messages")
    top = (body.top_logprobs or 0) if body.logprobs else None
    params = [
        service.sampling(
            body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens,
            service.cap,
            min_tokens=body.min_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=None if body.seed is None else body.seed + i,
            stop=body.stop_list(),
            logprobs=top,
            **constraint,
        )
        for i in range(body.n)
    ]
    streams = service.start([prompt] * body.n, params, adapter, request)
    calls = body.calls_tools()
    response_id = new_id("chatcmpl")
    recorder = _recorder(service, request, "chat.completions", response_id, body, routing)
    if service.shadow is not None:
        service.shadow.mirror(service, request, body, prompt, params[0], response_id, lambda t: _chat_choice(t, calls))
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _chat_events(service, body.model, response_id, streams, usage, calls, recorder)
        return StreamingResponse(events, media_type="text/event-stream")
    results = await asyncio.gather(*(s.result() for s in streams))
    failed = _failed(results)
    if failed is not None:
        if recorder is not None:
            recorder.done(streams, results, [], failed.status_code)
        return failed
    choices = []
    for i, r in enumerate(results):
        content, made = parse_calls(r.text) if calls else (r.text, [])
        choices.append(
            ChatChoice(
                index=i,
                message=AssistantMessage(content=content, tool_calls=[c.as_message_part() for c in made] or None),
                finish_reason="tool_calls" if made and r.finish_reason == "stop" else finish_reason(r.finish_reason),
                logprobs=service.chat_logprobs(r.logprobs) if top is not None else None,
            )
        )
    if recorder is not None:
        recorder.done(streams, results, [_captured_choice(c) for c in choices], 200)
    return ChatCompletionResponse(id=response_id, model=body.model, choices=choices, usage=_usage(results))


def _recorder(
    service: Service, http: Request, route: str, response_id: str, body: SamplingRequest, routing: dict | None
) -> Recorder | None:
    """A recorder for this request if capture is on and samples it; a canary's routing decision is always
    captured, with the request."""
    capture = service.capture
    if capture is None or (routing is None and not capture.sampled()):
        return None
    recorder = Recorder(capture, http, route, response_id, body, bool(body.stream))
    if routing is not None:
        recorder.request["canary"] = routing
    return recorder


def _captured_choice(choice: ChatChoice) -> dict[str, Any]:
    return {**choice.message.model_dump(exclude_none=True), "finish_reason": choice.finish_reason}


def _chat_choice(total: Completion, calls: bool) -> dict[str, Any]:
    """A streamed choice as capture keeps it (the message as the non-streamed response would hold it)."""
    content, made = parse_calls(total.text) if calls else (total.text, [])
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if made:
        message["tool_calls"] = [c.as_message_part() for c in made]
    called = bool(made) and total.finish_reason == "stop"
    return {**message, "finish_reason": "tool_calls" if called else finish_reason(total.finish_reason)}


def _chat_events(
    service: Service,
    model: str,
    response_id: str,
    streams: list[RequestStream],
    include_usage: bool,
    calls: bool = False,
    recorder: Recorder | None = None,
) -> AsyncIterator[str]:
    """OpenAI's chat stream (`_chat_chunks`); then, once it ends or the client goes, the `recorder` gets it."""
    head = {"id": response_id, "object": "chat.completion.chunk", "created": now(), "model": model}
    totals = [Completion() for _ in streams]
    events = _chat_chunks(service, head, streams, totals, include_usage, calls)
    if recorder is None:
        return events
    return _recorded(
        events, lambda: recorder.done(streams, totals, [_chat_choice(t, calls) for t in totals], _stream_status(totals))
    )


async def _recorded(events: AsyncIterator[str], done: Callable[[], None]) -> AsyncIterator[str]:
    """`events`, then `done()` however the stream ends (a client that goes away closes it at a yield)."""
    try:
        async for event in events:
            yield event
    finally:
        done()


def _stream_status(totals: list[Completion]) -> int:
    """The status a streamed request would have had unstreamed (the stream itself always starts with 200)."""
    reasons = {t.finish_reason for t in totals}
    if None in reasons:
        return CLIENT_GONE
    return 504 if "timeout" in reasons else 500 if "error" in reasons else 200


async def _chat_chunks(
    service: Service,
    head: dict[str, Any],
    streams: list[RequestStream],
    totals: list[Completion],
    include_usage: bool,
    calls: bool,
) -> AsyncIterator[str]:
    """OpenAI's chat stream: a role chunk per choice, content deltas (with `calls`, tool calls as OpenAI streams
    them: the id and name, then argument deltas), a finish chunk, usage, [DONE]; each output folded into
    `totals`."""

    def chunk(index: int, delta: dict, finish: str | None = None, logprobs: object = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        body = {**head, "choices": [choice], **({"usage": None} if include_usage else {})}
        return _sse(body)  # plain dicts: this runs once per token per stream

    for i in range(len(streams)):
        yield chunk(i, {"role": "assistant", "content": ""})
    readers = [CallStream() for _ in streams] if calls else []
    async for i, out in _merged(streams) if len(streams) > 1 else ((0, out) async for out in streams[0]):
        totals[i].add(out)
        logprobs = service.chat_logprobs(out.logprobs).model_dump() if out.logprobs else None
        if readers:
            for delta in _call_deltas(readers[i].feed(out.text, final=out.finish_reason is not None)):
                yield chunk(i, delta)
        elif out.text or logprobs:
            yield chunk(i, {"content": out.text}, logprobs=logprobs)
        if out.finish_reason in ("timeout", "error"):
            yield _sse(
                ErrorResponse(error=ErrorBody(message=out.error or out.finish_reason, type="server_error")).model_dump()
            )
        if out.finish_reason is not None:
            called = bool(readers) and readers[i].calls > 0 and out.finish_reason == "stop"
            yield chunk(i, {}, "tool_calls" if called else finish_reason(out.finish_reason))
    if include_usage:
        yield _sse({**head, "choices": [], "usage": _usage(totals).model_dump()})
    yield "data: [DONE]\n\n"


def _call_deltas(events: list[tuple[str, Any]]) -> list[dict]:
    """Chat deltas for what a `CallStream` read: content, a call's id and name, a call's argument text."""
    deltas: list[dict] = []
    for kind, value in events:
        if kind == "content":
            deltas.append({"content": value})
        elif kind == "call":
            index, call_id, name = value
            function = {"name": name, "arguments": ""}
            deltas.append({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]})
        else:
            index, text = value
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": text}}]})
    return deltas


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response | CompletionResponse:
    service = service_of(request)
    adapter, routing = service.route(body.model, service.adapter_for(body.model))
    tokenizer = service.engine.tokenizer
    prompts, texts = [], []
    for p in body.prompts():
        if isinstance(p, str):
            prompts.append(tokenizer(p)["input_ids"])
            texts.append(p)
        else:
            if any(t < 0 or t >= len(tokenizer) for t in p):
                return error(400, "prompt holds token ids outside the vocabulary", param="prompt")
            prompts.append(p)
            texts.append(tokenizer.decode(p))
    echo_logprobs = body.logprobs if body.echo and body.logprobs is not None else None
    constraint = await service.constraint(body)
    params = [
        service.sampling(
            body.max_tokens,
            16,
            min_tokens=body.min_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=None if body.seed is None else body.seed + k,
            stop=body.stop_list(),
            logprobs=body.logprobs,
            prompt_logprobs=echo_logprobs,
            **constraint,
        )
        for k in range(body.n)
    ]
    pairs = [(i, k) for i in range(len(prompts)) for k in range(body.n)]
    streams = service.start([prompts[i] for i, _ in pairs], [params[k] for _, k in pairs], adapter, request)
    response_id = new_id("cmpl")
    recorder = _recorder(service, request, "completions", response_id, body, routing)
    if body.stream:
        events = _completion_events(body, response_id, streams, [texts[i] for i, _ in pairs], recorder)
        return StreamingResponse(events, media_type="text/event-stream")
    results = await asyncio.gather(*(s.result() for s in streams))
    failed = _failed(results)
    if failed is not None:
        if recorder is not None:
            recorder.done(streams, results, [], failed.status_code)
        return failed
    choices = []
    for index, ((i, _), r) in enumerate(zip(pairs, results, strict=True)):
        assert r is not None
        prefix = texts[i] if body.echo else ""
        logprobs = None
        if body.logprobs is not None:
            echoed = r.prompt_logprobs if body.echo else None
            logprobs = service.completion_logprobs(echoed, prompts[i], r.logprobs, 0)
        choices.append(
            CompletionChoice(
                index=index, text=prefix + r.text, finish_reason=finish_reason(r.finish_reason), logprobs=logprobs
            )
        )
    prompt_tokens = sum(len(p) for p in prompts)
    completion_tokens = sum(r.completion_tokens for r in results if r is not None)
    usage = Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )
    if recorder is not None:
        recorder.done(streams, results, _text_choices(results), 200)
    return CompletionResponse(id=response_id, model=body.model, choices=choices, usage=usage)


def _completion_events(
    body: CompletionRequest,
    response_id: str,
    streams: list[RequestStream],
    texts: list[str],
    recorder: Recorder | None = None,
) -> AsyncIterator[str]:
    """The legacy completions stream (`_completion_chunks`); then the `recorder` gets it."""
    totals = [Completion() for _ in streams]
    events = _completion_chunks(body, response_id, streams, texts, totals)
    if recorder is None:
        return events
    return _recorded(events, lambda: recorder.done(streams, totals, _text_choices(totals), _stream_status(totals)))


def _text_choices(results: list[Completion | None]) -> list[dict[str, Any]]:
    """Completion choices as capture keeps them."""
    return [{"text": r.text, "finish_reason": finish_reason(r.finish_reason)} for r in results if r is not None]


async def _completion_chunks(
    body: CompletionRequest, response_id: str, streams: list[RequestStream], texts: list[str], totals: list[Completion]
) -> AsyncIterator[str]:
    """The legacy completions stream: text deltas per choice (the echoed prompt first), usage, [DONE]."""
    head = {"id": response_id, "object": "text_completion", "created": now(), "model": body.model}

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        return _sse({**head, "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}]})

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.echo:
        for i, text in enumerate(texts):
            yield chunk(i, text)
    async for i, out in _merged(streams) if len(streams) > 1 else ((0, out) async for out in streams[0]):
        totals[i].add(out)
        if out.text or out.finish_reason is not None:
            yield chunk(i, out.text, finish_reason(out.finish_reason))
    if include_usage:
        yield _sse({**head, "choices": [], "usage": _usage(totals).model_dump()})
    yield "data: [DONE]\n\n"
