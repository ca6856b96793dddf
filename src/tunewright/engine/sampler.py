"""Choosing the next token: greedy, or temperature + top-p with a per-request seeded generator."""

from __future__ import annotations

import torch

from tunewright.engine.params import SamplingParams, TokenLogprob


def new_generator(params: SamplingParams) -> torch.Generator | None:
    """A generator for a sampled request (seeded when it asks for a seed); None for greedy."""
    if params.temperature <= 0:
        return None
    gen = torch.Generator()
    gen.manual_seed(params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,))))
    return gen


def choose(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token from one row of float32 logits; sampled on the CPU, where the request's seeded generator is,
    so a seed draws the same way whatever device computed the logits."""
    if params.temperature <= 0 or generator is None:
        return int(torch.argmax(logits))
    logits = logits.cpu()
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < params.top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], ordered[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


LOGPROB_FLOOR = -9999.0  # a token masked out (min_tokens, choices) reports this, as OpenAI and vLLM do, not -inf


def token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """The chosen token's log-probability under the model (before temperature) and the `top` best."""
    logprobs = torch.log_softmax(logits, dim=-1).clamp(min=LOGPROB_FLOOR)
    best = []
    if top > 0:
        values, ids = torch.topk(logprobs, top)
        best = list(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprob(token, float(logprobs[token]), best)
