"""Chat-templated tokenisation with assistant-only labels, and padded batches.

Labels are derived from character spans rather than from `{% generation %}` markers, so
they are right for any chat template: each assistant turn's span runs from the end of the
rendered prefix (with the generation prompt) to the end of the turn's EOS token. Tokens
inside a span are trained, everything else is -100. The EOS is trained, so the model
learns to stop; padding uses a pad token distinct from EOS, so no EOS is ever masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.core.errors import DataError
from tunewright.core.records import Conversation

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    id: str


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], gen_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)


def assistant_spans(tokenizer: PreTrainedTokenizerBase, conv: Conversation) -> tuple[str, list]:
    """Render `conv` and return the text plus the character span of every assistant turn."""
    messages = [{"role": m.role, "content": m.content} for m in conv.messages]
    text = _render(tokenizer, messages, gen_prompt=False)
    eos = tokenizer.eos_token or ""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], gen_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], gen_prompt=False)
        if not text.startswith(prefix) or not text.startswith(upto):
            raise DataError(
                "the chat template does not render conversations prefix-consistently; "
                "assistant-only labels cannot be located"
            )
        start = len(prefix)
        end = upto.find(eos, start + len(m["content"])) if eos else -1
        end = end + len(eos) if end >= 0 else len(upto.rstrip())
        spans.append((start, end))
    return text, spans


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, conv: Conversation, max_length: int) -> Example | None:
    """Token ids and assistant-only labels for one conversation; None if it is too long."""
    text, spans = assistant_spans(tokenizer, conv)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if len(ids) > max_length:
        return None
    labels = [IGNORE] * len(ids)
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        if any(start <= a and b <= end and b > a for start, end in spans):
            labels[t] = ids[t]
    if all(x == IGNORE for x in labels):
        return None
    return Example(ids, labels, conv.id)


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
