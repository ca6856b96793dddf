"""The server's front door, as plain ASGI middleware: API key, body size limit, access log.

Health probes pass without a key; everything else needs `Authorization: Bearer <key>` when
a key is configured (compared in constant time). A body over the limit is refused with 413
whether or not it announces its length. Every request leaves one JSON line in the access
log (method, path, status, duration, model, token counts, client), never the prompt text.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

OPEN_PATHS = ("/health", "/v1/health/")
access_log = logging.getLogger("tunewright.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _too_large(send: Send, limit: int) -> None:
    await _reply(send, 413, f"the request body is over {limit} bytes", "invalid_request_error", "request_too_large")


async def _reply(send: Send, status: int, message: str, kind: str, code: str | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Gate:
    def __init__(
        self, app: Callable[..., Awaitable[None]], api_key: str | None, max_body_bytes: int, log: bool
    ) -> None:
        self.app, self.api_key, self.max_body, self.log = app, api_key, max_body_bytes, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, tracked_send)
        finally:
            if self.log:
                self._log(scope, status[0], time.perf_counter() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if self.api_key and not path.startswith(OPEN_PATHS):
            given = _header(scope, b"authorization") or ""
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                await _reply(
                    send,
                    401,
                    "a valid API key is required (Authorization: Bearer ...)",
                    "authentication_error",
                    "invalid_api_key",
                )
                return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _too_large(send, self.max_body)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:  # read the whole body first: one without a length is counted as it arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _too_large(send, self.max_body)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), [False]

        async def replay() -> Message:
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: the disconnect notice, if the client goes away

        await self.app(scope, replay, send)

    @staticmethod
    def _log(scope: Scope, status: int, seconds: float) -> None:
        state = scope.get("state") or {}
        client = scope.get("client")
        entry = {
            "method": scope.get("method"),
            "path": scope["path"],
            "status": status,
            "ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
        }
        entry.update(
            {k: v for k, v in state.items() if k in ("model", "prompt_tokens", "completion_tokens", "n", "stream")}
        )
        access_log.info(json.dumps(entry))
