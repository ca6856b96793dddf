"""The engine's request types: its configuration, the errors it refuses requests with, a request's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tunewright.engine.detokenize import Detokenizer
from tunewright.engine.grammar import Matcher
from tunewright.engine.params import Output, SamplingParams, TokenLogprob


class QueueFull(Exception):
    """The waiting queue is at its bound; the request was not taken (HTTP 429)."""


class EngineClosed(Exception):
    """The engine is shutting down and takes no new requests (HTTP 503)."""


class UnknownAdapter(LookupError):
    """A request named an adapter that is not loaded (HTTP 404)."""


class PromptTooLong(ValueError):
    """A prompt that does not fit the engine's context with room for an answer (HTTP 400)."""


@dataclass
class EngineConfig:
    max_num_seqs: int = 16  # requests decoding together (KV-cache slots)
    max_model_len: int = 1024  # prompt + answer tokens per request
    max_num_batched_tokens: int = 512  # tokens per forward pass (decode rows + prefill chunks)
    max_waiting: int = 256  # requests queued for a slot before new ones are refused
    prefix_caching: bool = True  # reuse the keys and values of a prompt prefix already computed


@dataclass
class Sequence:
    id: int
    prompt: list[int]
    params: SamplingParams
    adapter: int
    adapter_name: str | None
    on_event: Callable[[Output], None]
    submitted: float
    admitted: float | None = None  # when it got a slot
    tokens: list[int] = field(default_factory=list)
    slot: int | None = None
    computed: int = 0  # tokens whose keys and values are in the cache
    generated: list[int] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] = field(default_factory=list)
    cancelled: bool = False
    generator: torch.Generator | None = None
    detok: Detokenizer | None = None
    matcher: Matcher | None = None  # where the answer stands in its grammar (params.grammar)
    every: int = 1  # background work advances in one step of `every` while other requests run (Engine.submit)

    @property
    def deadline(self) -> float | None:
        t = self.params.timeout_s
        return self.submitted + t if t else None


class RequestHandle:
    """A submitted request: its id, and `cancel()` (a client that went away)."""

    def __init__(self, request: Sequence, wake: Callable[[], None]) -> None:
        self._request, self._wake = request, wake
        self.id = request.id

    def cancel(self) -> None:
        """Stop the request; the engine drops it at its next step, which `wake` starts now."""
        self._request.cancelled = True
        self._wake()
