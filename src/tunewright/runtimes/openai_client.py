"""A small OpenAI-compatible HTTP client with bounded concurrency, timeouts and retries.

Eval targets and LLM judges are any server that speaks the OpenAI API (ours, vLLM, NIM).
A request that fails to connect, times out, or gets 429 / 5xx is retried with exponential
backoff; one that still fails ends the run with a message naming the server, the attempts
and the last error (a half-scored suite is never reported as complete). A 4xx other than
429 is the caller's mistake and is not retried. httpx is used directly rather than the
`openai` package so that the runtime needs no SDK and every retry decision is ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tunewright.core.errors import UserError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class EndpointError(UserError):
    """The server could not be used: unreachable after the retries, or it rejected the request."""


class OpenAIClient:
    """Calls one OpenAI-compatible server; `map` runs many requests `concurrency` at a time."""

    def __init__(
        self,
        base_url: str,
        api_key_env: str | None = None,
        timeout_s: float = 120,
        retries: int = 3,
        concurrency: int = 8,
        backoff_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise UserError(f"the API key variable {api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.retries, self.concurrency, self.backoff_s = retries, concurrency, backoff_s
        self.http = httpx.Client(headers=headers, timeout=timeout_s)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call with retries; the parsed JSON response."""
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self.http.request(method, url, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {_message(response)}"
                continue
            if response.status_code >= 400:
                raise EndpointError(f"{url} rejected the request: HTTP {response.status_code}: {_message(response)}")
            try:
                return response.json()
            except ValueError:
                raise EndpointError(f"{url} answered with something that is not JSON") from None
        raise EndpointError(f"{url} failed after {self.retries + 1} attempt(s): {last}")

    def models(self) -> list[str]:
        """The model names the server lists."""
        return [m["id"] for m in self.request("GET", "/models").get("data", [])]

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/chat/completions", body)

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], advance: Callable[[int], None] | None = None
    ) -> list[Any]:
        """`fn` over `items`, at most `concurrency` at a time, results in order."""

        def one(item: Any) -> Any:
            result = fn(item)
            if advance is not None:
                advance(1)
            return result

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, items))

    def close(self) -> None:
        self.http.close()


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:300]
    except (ValueError, AttributeError):
        return response.text[:300]
