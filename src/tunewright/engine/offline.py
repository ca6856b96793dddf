"""Batch work through the engine: answers to many conversations, and log-probs of given continuations.

Eval, export parity and the lm-evaluation-harness adapter all generate and score here, so
there is one generation path in the codebase: the engine the server runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.model_source import ModelSource
from tunewright.engine.engine import Engine
from tunewright.engine.params import Completion, SamplingParams, TokenLogprob
from tunewright.engine.requests import EngineConfig

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]


def engine_for(
    source: ModelSource, longest: int, batch_size: int, requests: int, loaded: Loaded | None = None
) -> Engine:
    """An engine sized for `requests` requests of at most `longest` tokens, `batch_size` decoding together."""
    config = EngineConfig(
        max_num_seqs=max(1, min(batch_size, requests)),
        max_model_len=max(2, longest),
        max_num_batched_tokens=max(512, longest),
        max_waiting=max(1, requests),
    )
    return Engine.from_source(source, config, loaded=loaded)


def answer_chats(
    source: ModelSource,
    conversations: list[list[dict[str, Any]]],
    max_new_tokens: int,
    batch_size: int = 16,
    advance: Callable[[int], None] | None = None,
    tools: list[list[dict[str, Any]]] | None = None,
) -> list[Completion]:
    """Greedy answers of `source` to each conversation (offered its `tools`, if any), `batch_size` decoding
    together."""
    model, tokenizer = source.load_base()
    offered = tools or [[] for _ in conversations]
    prompts = [chat.prompt_ids(tokenizer, c, t or None) for c, t in zip(conversations, offered, strict=True)]
    longest = max(map(len, prompts), default=1) + max_new_tokens
    engine = engine_for(source, longest, batch_size, len(prompts), (model, tokenizer))
    try:
        return engine.generate(prompts, SamplingParams(max_tokens=max_new_tokens), advance=advance)
    finally:
        engine.shutdown()


def continuation_logprobs(
    engine: Engine, pairs: list[tuple[list[int], list[int]]], advance: Callable[[int], None] | None = None
) -> list[tuple[float, bool]]:
    """For each (context, continuation) token pair: the continuation's summed log-prob given the
    context, and whether greedy decoding would have produced exactly it. No token is generated."""
    results = []
    for scored in _scored(engine, pairs, advance):
        total = sum(t.logprob for t in scored)
        greedy = all(t.top and t.top[0][0] == t.token_id for t in scored)
        results.append((total, greedy))
    return results


def top1_agreement(
    engine: Engine, pairs: list[tuple[list[int], list[int]]], advance: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """Reading each (context, continuation), how many continuation tokens the model ranks first, of how many."""
    scored = _scored(engine, pairs, advance)
    return sum(1 for s in scored for t in s if t.top and t.top[0][0] == t.token_id), sum(map(len, scored))


def _scored(
    engine: Engine, pairs: list[tuple[list[int], list[int]]], advance: Callable[[int], None] | None
) -> list[list[TokenLogprob]]:
    prompts = [ctx + cont for ctx, cont in pairs]
    outs = engine.generate(prompts, SamplingParams(max_tokens=0, prompt_logprobs=1), advance=advance)
    found = []
    for (ctx, cont), out in zip(pairs, outs, strict=True):
        scored = (out.prompt_logprobs or [])[len(ctx) : len(ctx) + len(cont)]
        if len(scored) != len(cont) or any(t is None for t in scored):
            raise RuntimeError("the engine returned fewer prompt log-probs than tokens")
        found.append(scored)
    return found  # type: ignore[return-value]
