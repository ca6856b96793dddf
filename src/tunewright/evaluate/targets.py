"""What `eval` evaluates: a local model (through the serving engine) or an OpenAI-compatible endpoint.

Both answer a list of conversations with greedy decoding. A local target also scores given
answers (reference NLL) from the model's log-probs; an endpoint cannot, because its chat
template and tokenizer are not ours to apply, so a task that needs it is refused before
any generation. A local model is loaded once and shared by every task of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.engine.offline import Loaded, answer_chats, answer_tokens, continuation_logprobs, engine_for
from tunewright.evaluate.client import EndpointError, OpenAIClient
from tunewright.evaluate.config import EndpointConfig

Advance = Callable[[int], None] | None


@dataclass
class LocalTarget:
    source: ModelSource
    batch_size: int = 16
    _loaded: Loaded | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def run_id(self) -> str | None:
        return self.source.run_id

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "label": self.label, "base": self.source.base, "run": self.run_id}

    def loaded(self) -> Loaded:
        if self._loaded is None:
            self._loaded = self.source.load_base()
        return self._loaded

    def generate(self, chats: list[list[dict[str, str]]], max_tokens: int, advance: Advance = None) -> list[str]:
        outs = answer_chats(self.source, chats, max_tokens, self.batch_size, advance, self.loaded())
        return [o.text for o in outs]

    def reference_nll(
        self, chats: list[list[dict[str, str]]], answers: list[str], advance: Advance = None
    ) -> list[tuple[float, int]]:
        """(negative log-likelihood, tokens) of each answer, end-of-turn token included."""
        model, tokenizer = self.loaded()
        pairs = [answer_tokens(tokenizer, c, a) for c, a in zip(chats, answers, strict=True)]
        longest = max(len(c) + len(a) for c, a in pairs)
        engine = engine_for(self.source, longest, self.batch_size, len(pairs), (model, tokenizer))
        try:
            scored = continuation_logprobs(engine, pairs, advance)
        finally:
            engine.shutdown()
        return [(-logprob, len(a)) for (logprob, _), (_, a) in zip(scored, pairs, strict=True)]

    def close(self) -> None:
        self._loaded = None


@dataclass
class EndpointTarget:
    url: str
    model: str
    config: EndpointConfig
    client: OpenAIClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        c = self.config
        self.client = OpenAIClient(self.url, c.api_key_env, c.timeout_s, c.retries, c.concurrency)

    @property
    def label(self) -> str:
        return f"{self.model}@{self.url}"

    run_id = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "endpoint", "label": self.label, "url": self.url, "model": self.model}

    def check(self) -> None:
        """Fail early, before any generation, if the server is unreachable or does not serve the model."""
        try:
            served = self.client.models()
        except EndpointError as exc:
            raise EndpointError(f"endpoint {self.url} is not usable: {exc}") from None
        if self.model not in served:
            raise UserError(f"endpoint {self.url} does not serve {self.model!r}; it serves: {', '.join(served)}")

    def generate(self, chats: list[list[dict[str, str]]], max_tokens: int, advance: Advance = None) -> list[str]:
        def one(messages: list[dict[str, str]]) -> str:
            body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
            reply = self.client.chat(body)
            try:
                return reply["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                raise EndpointError(f"{self.url}: a chat completion without choices[0].message: {reply}") from None

        return self.client.map(one, chats, advance)

    def reference_nll(self, chats: list[list[dict[str, str]]], answers: list[str], advance: Advance = None) -> Any:
        raise UserError("reference NLL needs the model's own chat template and tokenizer: evaluate a local model")

    def close(self) -> None:
        self.client.close()


Target = LocalTarget | EndpointTarget
