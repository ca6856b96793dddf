"""Export parity: the export must answer the golden prompts as the trained model did.

Both are run greedily on the same prompts through the same engine. A lossless export
(merged, adapter) must give exactly the same answers: any difference means the tokenizer,
template, merge or generation settings changed.

A GGUF export rounds every weight (to float16, or to 8-bit blocks for q8_0), and over 64
greedy tokens a real model's answer can legitimately take another near-tied word and go
its own way from there; whether it does depends on the CPU's rounding, not on the file.
So a GGUF is judged the way llama.cpp judges quantization (`llama-perplexity
--kl-divergence`, "same top"): reading the trained model's answers token by token, how
often the export ranks the same next token first. Greedy divergences are still recorded.
A conversion fault (tokenizer, template, rotary layout, stop token) drops agreement far
below `MIN_AGREEMENT`; rounding does not.

Golden prompts may offer tools (OpenAI function schemas): both models are asked with them,
so tool calls are part of every answer compared. Another runtime (vLLM) returns the calls it
parsed rather than the text the model wrote, so its answers are compared as content plus
calls (name and arguments), and a JSON answer as the object it holds (`same_answer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tunewright.core import chat
from tunewright.core.model_source import ModelSource
from tunewright.core.progress import progress_bar
from tunewright.core.tools import parse_calls
from tunewright.engine.offline import answer_chats, engine_for, top1_agreement

PARITY_TOKENS = 64  # greedy tokens per golden prompt
# Least top-1 agreement per GGUF type. SmolLM2-135M agrees on 97.3-97.6% of tokens in q8_0 and on
# more than 99.5% in f16 (the tiny model: 99.6% in q8_0); a wrong rotary layout, vocabulary or template
# leaves a model guessing, far below either.
MIN_AGREEMENT = {"f16": 0.99, "q8_0": 0.95}


@dataclass(frozen=True)
class Golden:
    """The golden prompts: ids, conversations ending before the answer, and the tools each offers."""

    ids: list[str]
    prompts: list[list[dict[str, Any]]]
    tools: list[list[dict[str, Any]]]


@dataclass
class ParityResult:
    prompts: int
    diverged: list[dict[str, str]]
    trained: list[str] = field(default_factory=list)  # the trained model's answers, in prompt order
    trained_tokens: list[list[int]] = field(default_factory=list)  # ... as token ids, end-of-turn included

    @property
    def passed(self) -> bool:
        return not self.diverged


def check_parity(
    reference: ModelSource, exported: ModelSource, golden: Golden, max_new_tokens: int = PARITY_TOKENS
) -> ParityResult:
    """Generate with both models and list the prompts whose answers differ."""
    answers = []
    for what, source in (("trained model", reference), ("export", exported)):
        with progress_bar(f"golden prompts on the {what}", total=len(golden.prompts)) as advance:
            answers.append(answer_chats(source, golden.prompts, max_new_tokens, advance=advance, tools=golden.tools))
    result = compare_answers(golden, [c.text for c in answers[0]], [c.text for c in answers[1]])
    result.trained_tokens = [c.token_ids for c in answers[0]]
    return result


def _structured(text: str) -> tuple[str, Any]:
    """An answer as what it means to a program: ("calls", (content, calls)), ("json", object) or ("text", text)."""
    content, calls = parse_calls(text)
    if calls:
        return "calls", ((content or "").strip(), [(c.name, c.arguments) for c in calls])
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", text


def same_answer(a: str, b: str) -> bool:
    """Equal as a program reads them: the same content and calls, the same JSON object, or the same text."""
    return a == b or (_structured(a)[0] != "text" and _structured(a) == _structured(b))


def compare_answers(golden: Golden, trained: list[str], exported: list[str], structured: bool = False) -> ParityResult:
    """The prompts whose exported answer differs from the trained model's: as text, or (`structured`, for a
    runtime that returns parsed calls) as `same_answer` reads them."""
    same = same_answer if structured else str.__eq__
    diverged = [
        {"id": i, "prompt": p[-1]["content"], "trained": a, "export": b}
        for i, p, a, b in zip(golden.ids, golden.prompts, trained, exported, strict=True)
        if not same(a, b)
    ]
    return ParityResult(len(golden.prompts), diverged, trained)


def kinds(answers: list[str]) -> dict[str, int]:
    """How many answers make tool calls, are JSON, or are text: what parity compared."""
    counts = {"calls": 0, "json": 0, "text": 0}
    for answer in answers:
        counts[_structured(answer)[0]] += 1
    return counts


def top1_agreement_with(exported: ModelSource, golden: Golden, trained_tokens: list[list[int]]) -> float:
    """Share of the trained model's answer tokens that `exported` ranks first when reading those answers."""
    model, tokenizer = exported.load_base()
    pairs = [
        (chat.prompt_ids(tokenizer, p, t or None), a)
        for p, t, a in zip(golden.prompts, golden.tools, trained_tokens, strict=True)
    ]
    engine = engine_for(exported, max(len(c) + len(t) for c, t in pairs), 16, len(pairs), (model, tokenizer))
    try:
        with progress_bar("trained answers read by the export", total=len(pairs)) as advance:
            hits, total = top1_agreement(engine, pairs, advance)
    finally:
        engine.shutdown()
    return hits / max(total, 1)
