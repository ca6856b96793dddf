"""Capture for `serve --engine vllm`: a proxy in front of vLLM that records what passes through it.

vLLM logs prompts only at debug level and keeps nothing, so with `capture.enabled` tunewright
starts vLLM on a private port of 127.0.0.1 and serves the public address itself. Every request
goes to vLLM unchanged and its answer comes back unchanged, streamed event by event (httpx); a
request chosen for capture is read on the way through: the request body, the answer or tool
calls folded from the stream, the response id vLLM gave it, status, tokens and timings (time to
the first answered token and total, as the client sees them; vLLM's queue time is not exposed per
request). A captured stream asks vLLM for its usage chunk and, when the client did not ask for
it, drops that chunk before the client sees it. The record goes to the same `Capture` as our
engine's (PII removed by its writer thread, off the request path), and `/v1/feedback` joins to it.

`/metrics` is vLLM's own exposition followed by capture's metrics; `/v1/health/ready` is vLLM's
`/health`. The proxy adds one local hop: `benchmarks/serve_capture.py --engine vllm` measures it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.background import BackgroundTask

from tunewright.runtimes.vllm import stop_process, wait_ready
from tunewright.serve.app import invalid_request, unavailable
from tunewright.serve.capture import Capture, CaptureOff
from tunewright.serve.config import ServeConfig
from tunewright.serve.gate import Gate
from tunewright.serve.metrics import CaptureMetrics
from tunewright.serve.protocol import new_id
from tunewright.serve.routes import CLIENT_GONE, error, feedback

GENERATION = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions"}
HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive", "accept-encoding", "upgrade"}


def _forwarded(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def _returned(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}


class Folded:
    """An answer as capture keeps it, folded from vLLM's response or from its stream's events."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.id: str | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.usage: dict[str, Any] | None = None
        self.failed = False

    def add_response(self, body: dict[str, Any]) -> None:
        """A whole (unstreamed) response."""
        self.id, self.usage = body.get("id"), body.get("usage")
        for c in body.get("choices") or []:
            if self.chat:
                message = {k: v for k, v in (c.get("message") or {}).items() if v not in (None, [])}
                self.choices[c.get("index", 0)] = {**message, "finish_reason": c.get("finish_reason")}
            else:
                self.choices[c.get("index", 0)] = {"text": c.get("text"), "finish_reason": c.get("finish_reason")}

    def add_event(self, data: dict[str, Any]) -> bool:
        """One streamed event; True when it carried answer text or a tool call."""
        self.id = self.id or data.get("id")
        self.failed |= "error" in data and "choices" not in data
        if data.get("usage"):
            self.usage = data["usage"]
        answered = False
        for c in data.get("choices") or []:
            index = c.get("index", 0)
            slot = self.choices.setdefault(index, {"role": "assistant", "content": ""} if self.chat else {"text": ""})
            if c.get("finish_reason"):
                slot["finish_reason"] = c["finish_reason"]
            if not self.chat:
                slot["text"] += c.get("text") or ""
                answered |= bool(c.get("text"))
                continue
            delta = c.get("delta") or {}
            slot["content"] += delta.get("content") or ""
            answered |= bool(delta.get("content"))
            for call in delta.get("tool_calls") or []:
                answered = True
                kept = self.calls.setdefault(index, {}).setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                kept["id"] = call.get("id") or kept["id"]
                function = call.get("function") or {}
                kept["function"]["name"] += function.get("name") or ""
                kept["function"]["arguments"] += function.get("arguments") or ""
        return answered

    def captured_choices(self) -> list[dict[str, Any]]:
        """The choices in index order, a streamed message with its tool calls as the unstreamed one holds them."""
        out = []
        for index in sorted(self.choices):
            choice = dict(self.choices[index])
            calls = self.calls.get(index)
            if calls:
                choice["tool_calls"] = [calls[i] for i in sorted(calls)]
            out.append(choice)
        return out


class _Record:
    """One captured request, from the moment it arrived until its answer is complete (or abandoned)."""

    def __init__(self, capture: Capture, request: Request, route: str, body: dict[str, Any], adapters: set[str]):
        self.capture, self.route, self.body = capture, route, body
        self.arrived, self.started = time.time(), time.perf_counter()
        self.first: float | None = None
        model = body.get("model")
        self.model = model if isinstance(model, str) else ""
        self.adapter = self.model if self.model in adapters else None
        self.workload = request.headers.get(capture.cfg.workload_header) or body.get("user")
        self.stream = bool(body.get("stream"))
        self.answer = Folded(route == "chat.completions")

    def answered(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def done(self, status: int) -> None:
        usage = self.answer.usage or {}
        reasons = {c.get("finish_reason") for c in self.answer.choices.values()} - {None}
        self.capture.record(
            {
                "id": self.answer.id or new_id("chatcmpl" if self.answer.chat else "cmpl"),
                "ts": self.arrived,
                "route": self.route,
                "model": self.model,
                "adapter": self.adapter,
                "workload": self.workload if isinstance(self.workload, str) else None,
                "status": status,
                "finish_reason": ",".join(sorted(reasons)) or None,
                "stream": int(self.stream),
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "queue_s": None,
                "ttft_s": None if self.first is None else self.first - self.started,
                "total_s": time.perf_counter() - self.started,
                "request": self.body,
                "response": {"choices": self.answer.captured_choices()} if status == 200 else None,
            }
        )


def _events(buffer: bytearray) -> list[bytes]:
    """The complete server-sent events at the start of `buffer` (each with its blank line), removed from it."""
    out = []
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return out
        out.append(bytes(buffer[: end + 2]))
        del buffer[: end + 2]


def _data(event: bytes) -> dict[str, Any] | None:
    """The JSON object an event carries, if it carries one."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload.startswith(b"{"):
                try:
                    data = json.loads(payload)
                except ValueError:
                    return None
                return data if isinstance(data, dict) else None
    return None


async def _relayed(upstream: httpx.Response, record: _Record, hide_usage: bool) -> AsyncIterator[bytes]:
    """vLLM's stream as it arrives, each event folded into `record` (its usage chunk dropped when `hide_usage`);
    the record is queued however the stream ends (a client that goes away closes this at a yield)."""
    buffer, finished = bytearray(), False
    try:
        async for chunk in upstream.aiter_bytes():
            buffer += chunk
            for event in _events(buffer):
                data = _data(event)
                if data is not None:
                    if record.answer.add_event(data):
                        record.answered()
                    if hide_usage and data.get("usage") and not data.get("choices"):
                        continue
                elif event.strip() == b"data: [DONE]":
                    finished = True
                yield event
        if buffer:
            yield bytes(buffer)
    finally:
        await upstream.aclose()
        record.done(500 if record.answer.failed else 200 if finished else CLIENT_GONE)


def create_proxy(upstream: str, cfg: ServeConfig, api_key: str | None, capture: Capture, adapters: set[str]) -> FastAPI:
    """The public server in front of vLLM at `upstream` (its base URL, without /v1): forwards every route,
    captures the sampled generation requests, takes feedback and serves both sets of metrics."""
    metrics = CaptureMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.watch(capture)
        capture.start()
        timeout = httpx.Timeout(connect=10, read=cfg.request_timeout_s, write=60, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=upstream, timeout=timeout, limits=limits) as client:
            app.state.client = client
            yield

    app = FastAPI(title="tunewright capture proxy", lifespan=lifespan)
    app.state.capture, app.state.ready, app.state.load_error = capture, True, None
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=cfg.max_body_bytes, log=cfg.access_log)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(CaptureOff, unavailable)
    app.add_api_route("/v1/feedback", feedback, methods=["POST"], response_model=None)

    @app.get("/v1/health/live")
    def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/v1/health/ready", response_model=None)
    async def ready(request: Request) -> dict[str, str] | Response:
        try:
            answer = await request.app.state.client.get("/health", timeout=5)
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            return {"status": "ready"}
        return error(503, "vLLM is not ready", "service_unavailable")

    @app.get("/metrics")
    async def exposition(request: Request) -> Response:
        try:
            answer = await request.app.state.client.get("/metrics", timeout=10)
            theirs = answer.content if answer.status_code == 200 else b""
        except httpx.HTTPError:
            theirs = b""
        return Response(theirs + generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], response_model=None)
    async def forward(request: Request) -> Response:
        raw = await request.body()
        route = GENERATION.get(request.url.path)
        body = _json_object(raw) if route is not None and capture.sampled() else None
        if body is None:
            return await _send(request, raw)
        record = _Record(capture, request, route, body, adapters)
        hide_usage = False
        if record.stream:
            options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
            hide_usage = not options.get("include_usage")
            if hide_usage:
                raw = json.dumps({**body, "stream_options": {**options, "include_usage": True}}).encode()
        client: httpx.AsyncClient = request.app.state.client
        sent = client.build_request(request.method, request.url.path, content=raw, headers=_forwarded(request.headers))
        try:
            answer = await client.send(sent, stream=True)
        except httpx.HTTPError as exc:
            record.done(502)
            return error(502, f"vLLM did not answer: {exc}", "server_error")
        streamed = answer.headers.get("content-type", "").startswith("text/event-stream")
        if record.stream and answer.status_code == 200 and streamed:
            events = _relayed(answer, record, hide_usage)
            return StreamingResponse(events, status_code=200, headers=_returned(answer.headers))
        content = await answer.aread()
        await answer.aclose()
        if answer.status_code == 200:
            whole = _json_object(content)
            if whole is not None:
                record.answer.add_response(whole)
        record.done(answer.status_code)
        return Response(content, status_code=answer.status_code, headers=_returned(answer.headers))

    return app


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def _send(request: Request, raw: bytes) -> Response:
    """Forward a request as it is and stream the answer back as it is."""
    client: httpx.AsyncClient = request.app.state.client
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    sent = client.build_request(request.method, path, content=raw, headers=_forwarded(request.headers))
    try:
        answer = await client.send(sent, stream=True)
    except httpx.HTTPError as exc:
        return error(502, f"vLLM did not answer: {exc}", "server_error")
    return StreamingResponse(
        answer.aiter_bytes(),
        status_code=answer.status_code,
        headers=_returned(answer.headers),
        background=BackgroundTask(answer.aclose),
    )


def serve_captured(
    cmd: list[str],
    inner_port: int,
    cfg: ServeConfig,
    port: int,
    api_key: str | None,
    capture: Capture,
    adapters: set[str],
) -> int:
    """Run vLLM (`cmd`, listening on 127.0.0.1:`inner_port`) with the capturing proxy on `cfg.host`:`port` in
    front of it, until either stops; returns vLLM's exit status."""
    env = dict(os.environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    proc = subprocess.Popen(cmd, env=env)
    app = create_proxy(f"http://127.0.0.1:{inner_port}", cfg, api_key, capture, adapters)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=cfg.host, port=port, log_level="warning", timeout_graceful_shutdown=int(cfg.shutdown_grace_s)
        )
    )

    def follow() -> None:
        if wait_ready(proc, "127.0.0.1", inner_port):
            print(f"vLLM is ready; capturing on http://{cfg.host}:{port}/v1", file=sys.stderr)
        proc.wait()
        server.should_exit = True

    threading.Thread(target=follow, name="tunewright-vllm", daemon=True).start()
    try:
        server.run()
    finally:
        stop_process(proc)
    return proc.returncode or 0
