"""What a request asks for and what the engine sends back."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunewright.engine.grammar import Grammar


@dataclass
class SamplingParams:
    """How to decode one request; greedy when `temperature` is 0."""

    max_tokens: int = 16
    min_tokens: int = 0  # end-of-answer tokens are not sampled before this many tokens
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's logprob and the top k
    prompt_logprobs: int | None = None  # None: none; k >= 0: every prompt token's logprob and the top k
    timeout_s: float | None = None  # wall-clock limit from submission; the request ends with "timeout"
    choices: list[list[int]] | None = None  # the answer must be one of these token sequences (engine/choice.py)
    grammar: Grammar | None = None  # the answer must match this grammar (engine/grammar.py)


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Output:
    """One event of a request: new text and tokens, and at the end a finish reason.

    `finish_reason` is `stop` (EOS or a stop string), `length` (max_tokens or the model's
    context), `abort` (cancelled), `timeout`, or `error` (then `error` says why).
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_logprobs: list[TokenLogprob | None] | None = None
    error: str | None = None
    queued_s: float | None = None  # on the first event: seconds from submission to a slot


@dataclass
class Completion(Output):
    """A finished request: every event of it folded into one (`add`)."""

    def add(self, out: Output) -> None:
        """Fold one event in."""
        self.text += out.text
        self.token_ids += out.token_ids
        self.logprobs += out.logprobs
        self.prompt_tokens = out.prompt_tokens or self.prompt_tokens
        self.completion_tokens = out.completion_tokens or self.completion_tokens
        if out.prompt_logprobs is not None:
            self.prompt_logprobs = out.prompt_logprobs
        if out.queued_s is not None:
            self.queued_s = out.queued_s
        if out.finish_reason is not None:
            self.finish_reason, self.error = out.finish_reason, out.error
