"""Tokenisation with labels for the three tasks, and padded batches.

Chat: labels are derived from character spans rather than from `{% generation %}`
markers, so they are right for any chat template, with or without those markers: each
assistant turn's span (`core/chat.py`) runs from the end of the rendered prefix (with the
generation prompt) through the template's end of turn, and a token is trained when it overlaps a span
(a template whose generation prompt ends in a space merges it into the answer's first
token, which must still be trained). `loss_on` picks the spans: every assistant
turn (default), the last one, or all tokens. The end of turn is trained, so the model learns to
stop where every runtime stops. Padding positions are masked by position (attention 0, label -100), never by
token id, so a tokenizer whose pad token is its EOS (common in real models) loses no EOS.
Completion: prompt tokens are context, the completion and an appended EOS are trained.
Pretrain: every token of each document plus an EOS, cut into `max_length` blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.records import Conversation

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    id: str
    truncated: bool = False

    @property
    def targets(self) -> int:
        """Tokens that contribute to the loss (a label at position 0 is never predicted)."""
        return sum(1 for t in self.labels[1:] if t != IGNORE)


class Skip(Exception):
    """An example that cannot be trained on; `reason` is `too_long` or `no_targets`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fit(ids: list[int], labels: list[int], max_length: int, too_long: str, rid: str) -> Example:
    if len(ids) > max_length:
        if too_long != "truncate":
            raise Skip("too_long")
        ids, labels = ids[:max_length], labels[:max_length]
        example = Example(ids, labels, rid, truncated=True)
    else:
        example = Example(ids, labels, rid)
    if not example.targets:
        raise Skip("too_long" if example.truncated else "no_targets")
    return example


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    conv: Conversation,
    max_length: int,
    loss_on: str = "assistant",
    too_long: str = "drop",
    loss_from: int = 0,
) -> Example:
    """Token ids and labels for one conversation (assistant turns from message `loss_from` on);
    raises `Skip` when it cannot be trained on."""
    text, spans = chat.assistant_spans(tokenizer, conv.template_messages(), loss_from, conv.tools)
    if loss_on == "last":
        spans = spans[-1:]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if loss_on == "all":
        labels = list(ids) if spans else [IGNORE] * len(ids)
    else:
        labels = [IGNORE] * len(ids)
        for t, (a, b) in enumerate(enc["offset_mapping"]):
            if b > a and any(a < end and b > start for start, end in spans):
                labels[t] = ids[t]
    return _fit(ids, labels, max_length, too_long, conv.id)


def tokenize_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, rid: str, max_length: int, too_long: str = "drop"
) -> Example:
    """Prompt as context, completion + EOS as targets."""
    p = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return _fit(p + c, [IGNORE] * len(p) + c, max_length, too_long, rid)


def tokenize_document(tokenizer: PreTrainedTokenizerBase, text: str, rid: str, max_length: int) -> Iterator[Example]:
    """A document + EOS, every token a target, cut into blocks of at most `max_length`."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
    for k, i in enumerate(range(0, len(ids), max_length)):
        block = ids[i : i + max_length]
        if len(block) > 1:
            yield Example(block, list(block), f"{rid}#{k}" if len(ids) > max_length else rid)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: pad positions get attention 0 and label -100."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
