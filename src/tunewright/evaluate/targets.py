"""What `eval` evaluates: a local model (through the serving engine) or an OpenAI-compatible endpoint.

Both answer a list of conversations with greedy decoding. A local target also scores given
answers (reference NLL) from the model's log-probs; an endpoint cannot, because its chat
template and tokenizer are not ours to apply, so a task that needs it is refused before
any generation. A local model is loaded once and shared by every task of the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.core.tools import check_tools, written_reply
from tunewright.engine import grammar
from tunewright.engine.engine import Engine
from tunewright.engine.offline import Loaded, continuation_logprobs, engine_for
from tunewright.engine.params import SamplingParams
from tunewright.evaluate.config import EndpointConfig
from tunewright.runtimes.openai_client import EndpointError, OpenAIClient

Advance = Callable[[int], None] | None
Chat = list[dict[str, Any]]
Tools = list[dict[str, Any]]
Format = dict[str, Any] | None


@dataclass
class LocalTarget:
    """A local model behind one engine, built on first use and reused by every task of the run.

    The engine takes over the model's weights (it keeps them prepacked), so a request longer
    than the engine was sized for reloads the model into a larger engine rather than
    building a second engine on weights that are no longer there.
    """

    source: ModelSource
    batch_size: int = 16
    _loaded: Loaded | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def run_id(self) -> str | None:
        return self.source.run_id

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "local",
            "label": self.label,
            "base": self.source.base,
            "run": self.run_id,
            "dtype": self.source.dtype,
            "device": self.source.device,
        }

    @property
    def identity(self) -> str:
        """The files evaluated: the adapter's directory, else the model's (an export version's path)."""
        return str(Path(self.source.adapter or self.source.base).resolve())

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._loaded is None:
            self._loaded = self.source.load_base()
        return self._loaded[1]

    @property
    def context(self) -> int | None:
        """The model's context length (max_position_embeddings), once loaded."""
        _ = self.tokenizer
        assert self._loaded is not None
        return getattr(self._loaded[0].config, "max_position_embeddings", None)

    def engine(self, longest: int) -> Engine:
        """The engine, able to hold `longest` tokens of prompt and answer per request."""
        if self._engine is not None and self._engine.config.max_model_len >= longest:
            return self._engine
        if self._engine is not None:
            self._engine.shutdown()
            self._engine, self._loaded = None, None
        if self._loaded is None:
            self._loaded = self.source.load_base()
        model = self._loaded[0]
        context = getattr(model.config, "max_position_embeddings", None) or longest
        size = min(max(longest, 512), max(context, longest))
        self._engine = engine_for(self.source, size, self.batch_size, self.batch_size, self._loaded)
        return self._engine

    def generate(
        self,
        chats: list[Chat],
        max_tokens: int,
        advance: Advance = None,
        tools: list[Tools] | None = None,
        formats: list[Format] | None = None,
    ) -> list[str]:
        """Greedy answers. A chat with tools is answered as the server answers it under `tool_choice: auto`:
        text, or calls constrained to those tools and written as the model writes them; a chat with a JSON
        response format, constrained to it as the server constrains it."""
        tools = tools or [[] for _ in chats]
        formats = formats or [None for _ in chats]
        prompts = [chat.prompt_ids(self.tokenizer, c, t or None) for c, t in zip(chats, tools, strict=True)]
        engine = self.engine(max(map(len, prompts)) + max_tokens)
        groups: dict[str, list[int]] = {}
        for i, (t, f) in enumerate(zip(tools, formats, strict=True)):
            groups.setdefault(json.dumps([t, f], sort_keys=True), []).append(i)
        answers = [""] * len(chats)
        for rows in groups.values():
            offered, fmt = tools[rows[0]], formats[rows[0]]
            if offered:
                constraint = grammar.tool_calls(check_tools(offered), False, True)
            elif fmt is not None and fmt.get("type") == "json_schema":
                constraint = grammar.json_schema((fmt.get("json_schema") or {}).get("schema") or {})
            else:
                constraint = grammar.json_object() if fmt is not None else None
            params = SamplingParams(max_tokens=max_tokens, grammar=constraint)
            for i, out in zip(rows, engine.generate([prompts[i] for i in rows], params, advance=advance), strict=True):
                answers[i] = out.text
        return answers

    def reference_nll(
        self, chats: list[list[dict[str, str]]], answers: list[str], advance: Advance = None
    ) -> list[tuple[float, int]]:
        """(negative log-likelihood, tokens) of each answer, end-of-turn token included."""
        pairs = [chat.answer_ids(self.tokenizer, c, a) for c, a in zip(chats, answers, strict=True)]
        engine = self.engine(max(len(c) + len(a) for c, a in pairs))
        scored = continuation_logprobs(engine, pairs, advance)
        return [(-logprob, len(a)) for (logprob, _), (_, a) in zip(scored, pairs, strict=True)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
        self._engine, self._loaded = None, None


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

    @property
    def identity(self) -> str:
        return self.label

    def check(self) -> None:
        """Fail early, before any generation, if the server is unreachable or does not serve the model."""
        try:
            served = self.client.models()
        except EndpointError as exc:
            raise EndpointError(f"endpoint {self.url} is not usable: {exc}") from None
        if self.model not in served:
            raise UserError(f"endpoint {self.url} does not serve {self.model!r}; it serves: {', '.join(served)}")

    def generate(
        self,
        chats: list[Chat],
        max_tokens: int,
        advance: Advance = None,
        tools: list[Tools] | None = None,
        formats: list[Format] | None = None,
    ) -> list[str]:
        """Greedy answers; a reply's `tool_calls` are written after its content as a local model writes calls
        (`core/tools.call_text`), so the same scorers read both. A response format is sent as given."""

        def one(job: tuple[Chat, Tools, Format]) -> str:
            messages, offered, fmt = job
            body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
            if offered:
                body["tools"] = offered
            if fmt is not None:
                body["response_format"] = fmt
            reply = self.client.chat(body)
            try:
                message = reply["choices"][0]["message"]
            except (KeyError, IndexError, TypeError):
                raise EndpointError(f"{self.url}: a chat completion without choices[0].message: {reply}") from None
            return written_reply(message)

        jobs = zip(chats, tools or [[] for _ in chats], formats or [None for _ in chats], strict=True)
        return self.client.map(one, list(jobs), advance)

    def reference_nll(self, chats: list[list[dict[str, str]]], answers: list[str], advance: Advance = None) -> Any:
        raise UserError("reference NLL needs the model's own chat template and tokenizer: evaluate a local model")

    def close(self) -> None:
        self.client.close()


Target = LocalTarget | EndpointTarget
