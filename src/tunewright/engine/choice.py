"""Constrained decoding to one of a fixed set of answers (vLLM's `structured_outputs.choice`).

Each choice is tokenised once; at every step only the tokens that keep the answer a prefix
of some choice may be sampled, and the request stops when the answer equals a choice that
no other choice extends (where one does, the end-of-answer token is allowed too and the
model decides). The constraint works on each choice's own tokenisation, which is how the
model itself would write it after the generation prompt; a character-level grammar would
also admit other tokenisations of the same text, which a model does not produce.
"""

from __future__ import annotations


def allowed_tokens(choices: list[list[int]], generated: list[int]) -> set[int]:
    """Tokens that may follow `generated` while it stays a prefix of a choice."""
    n = len(generated)
    return {c[n] for c in choices if len(c) > n and c[:n] == generated}


def is_complete(choices: list[list[int]], generated: list[int]) -> bool:
    """Whether `generated` is one of the choices."""
    return any(c == generated for c in choices)
