"""Export parity: the export must answer the golden prompts exactly as the trained model did.

Both are run greedily on the same prompts through the same engine; any differing answer
is a divergence (tokenizer, template, merge, precision or generation settings changed).

A quantized export (GGUF q8_0) rounds every weight, and over 64 greedy tokens a real model's
answer can legitimately take another near-tied word and go its own way from there. Its
parity is measured the way llama.cpp measures quantization (`llama-perplexity
--kl-divergence`, "same top"): reading the trained model's answers token by token, how often
the export ranks the same next token first. A conversion fault (tokenizer, template, rotary
layout, stop token) drops that far below `QUANTIZED_MIN_AGREEMENT`; rounding does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunewright.core.model_source import ModelSource
from tunewright.core.progress import progress_bar
from tunewright.engine.engine import chat_prompt_ids
from tunewright.engine.offline import answer_chats, engine_for, top1_agreement

PARITY_TOKENS = 64  # greedy tokens per golden prompt
# SmolLM2-135M in q8_0 agrees on 97.3-97.6% of tokens (its base model as much as a fine-tune); a wrong
# rotary layout, vocabulary or template leaves a model guessing, far below this.
QUANTIZED_MIN_AGREEMENT = 0.95


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
    reference: ModelSource,
    exported: ModelSource,
    prompts: list[list[dict[str, str]]],
    ids: list[str],
    max_new_tokens: int = PARITY_TOKENS,
) -> ParityResult:
    """Generate with both models and list the prompts whose answers differ."""
    answers = []
    for what, source in (("trained model", reference), ("export", exported)):
        with progress_bar(f"golden prompts on the {what}", total=len(prompts)) as advance:
            answers.append(answer_chats(source, prompts, max_new_tokens, advance=advance))
    result = compare_answers(ids, prompts, [c.text for c in answers[0]], [c.text for c in answers[1]])
    result.trained_tokens = [c.token_ids for c in answers[0]]
    return result


def compare_answers(
    ids: list[str], prompts: list[list[dict[str, str]]], trained: list[str], exported: list[str]
) -> ParityResult:
    """The prompts whose exported answer differs from the trained model's."""
    diverged = [
        {"id": i, "prompt": p[-1]["content"], "trained": a, "export": b}
        for i, p, a, b in zip(ids, prompts, trained, exported, strict=True)
        if a != b
    ]
    return ParityResult(len(prompts), diverged, trained)


def top1_agreement_with(
    exported: ModelSource, prompts: list[list[dict[str, str]]], trained_tokens: list[list[int]]
) -> float:
    """Share of the trained model's answer tokens that `exported` ranks first when reading those answers."""
    model, tokenizer = exported.load_base()
    pairs = [(chat_prompt_ids(tokenizer, p), t) for p, t in zip(prompts, trained_tokens, strict=True)]
    engine = engine_for(exported, max(len(c) + len(t) for c, t in pairs), 16, len(pairs), (model, tokenizer))
    try:
        with progress_bar("trained answers read by the export", total=len(pairs)) as advance:
            hits, total = top1_agreement(engine, pairs, advance)
    finally:
        engine.shutdown()
    return hits / max(total, 1)
