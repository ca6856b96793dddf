"""Answers for a list of conversations in one call, through the engine (eval and export parity)."""

from __future__ import annotations

from collections.abc import Callable

from tunewright.core.model_source import ModelSource
from tunewright.engine.engine import Engine, chat_prompt_ids
from tunewright.engine.params import Completion, SamplingParams
from tunewright.engine.requests import EngineConfig


def answer_chats(
    source: ModelSource,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int = 16,
    advance: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Greedy answers of `source` to each conversation, `batch_size` decoding together."""
    model, tokenizer = source.load_base()
    prompts = [chat_prompt_ids(tokenizer, c) for c in conversations]
    longest = max(map(len, prompts), default=1)
    config = EngineConfig(
        max_num_seqs=max(1, min(batch_size, len(prompts))),
        max_model_len=longest + max_new_tokens,
        max_num_batched_tokens=max(512, longest),
        max_waiting=len(prompts),
    )
    adapters = {source.label: source.adapter} if source.adapter is not None else {}
    engine = Engine(model, tokenizer, config, adapters, source.label if adapters else None)
    try:
        return engine.generate(prompts, SamplingParams(max_tokens=max_new_tokens), advance=advance)
    finally:
        engine.shutdown()
