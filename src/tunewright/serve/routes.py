"""Thin HTTP routes: validate, call the engine, shape the OpenAI response."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tunewright.serve.engine import Engine, Sampling
from tunewright.serve.protocol import (
    AssistantMessage,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    Delta,
    ErrorBody,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
    completion_id,
)

router = APIRouter()


def error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/models")
def list_models(request: Request) -> ModelList:
    state = request.app.state
    return ModelList(data=[ModelCard(id=state.model_name, created=state.started)])


@router.post("/v1/chat/completions", response_model=None)
def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> ChatCompletionResponse | JSONResponse | StreamingResponse:
    state = request.app.state
    engine: Engine = state.engine
    if body.model != state.model_name:
        return error(404, f"The model '{body.model}' does not exist", param="model", code="model_not_found")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    limit = min(body.max_completion_tokens or body.max_tokens or state.max_new_tokens, state.max_new_tokens)
    sampling = Sampling(limit, body.temperature, body.top_p, body.seed, body.stop_list())
    if body.stream:
        return StreamingResponse(_sse(engine, body.model, messages, sampling), media_type="text/event-stream")
    gen = engine.chat(messages, sampling)
    return ChatCompletionResponse(
        model=body.model,
        choices=[Choice(message=AssistantMessage(content=gen.text), finish_reason=gen.finish_reason)],
        usage=Usage(
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            total_tokens=gen.prompt_tokens + gen.completion_tokens,
        ),
    )


def _sse(engine: Engine, model: str, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[str]:
    base = completion_id()
    created = int(time.time())

    def chunk(delta: Delta, finish: str | None = None) -> str:
        c = ChatCompletionChunk(
            id=base, created=created, model=model, choices=[ChunkChoice(delta=delta, finish_reason=finish)]
        )
        return f"data: {json.dumps(c.model_dump(exclude_none=False))}\n\n"

    yield chunk(Delta(role="assistant", content=""))
    for event in engine.stream(messages, sampling):
        if event.finish_reason is not None:
            yield chunk(Delta(), event.finish_reason)
        elif event.text:
            yield chunk(Delta(content=event.text))
    yield "data: [DONE]\n\n"
