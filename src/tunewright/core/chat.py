"""The chat template, in one place: rendering, prompt ids, trained answer spans, end of turn.

Training, the engine, evaluation, export (merged, GGUF, verification) and serving all ask
this module how a conversation becomes tokens, so they cannot disagree on where an answer
ends. That matters for templates whose end of turn is not the tokenizer's EOS: Llama-3
ends a turn with `<|eot_id|>` while its EOS is `<|end_of_text|>`; a Qwen2.5 base ends
turns with `<|im_end|>` while its EOS is `<|endoftext|>`. The model is trained to emit
what the template writes after an answer, so that is what every runtime must stop on.

- The **turn end** is found by rendering a probe conversation: the special tokens the
  template writes right after the assistant's content (none for a template that writes
  plain text there).
- The **end-of-turn set** is those tokens, the tokenizer's EOS and the generation config's
  EOS ids: generation stops on any of them, and exports write all of them.
- An **answer span** runs from the end of the rendered prefix (with the generation prompt)
  to the end of the turn-end text that closes it; without a turn end, to the EOS text; and
  without that, to the end of the turn's text (trailing whitespace left out).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from tunewright.core import tools as tool_format
from tunewright.core.errors import DataError

Message = dict[str, Any]
Span = tuple[int, int]
_MARK = "TUNEWRIGHT-PROBE-7f3a"  # text no template adds or trims, to find where the answer's content ends
_probed: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[str, str, list[int]]] = weakref.WeakKeyDictionary()
_tool_modes: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, tuple[str, str]] = weakref.WeakKeyDictionary()


def render(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    generation_prompt: bool,
    tools: Sequence[dict[str, Any]] | None = None,
) -> str:
    """`messages` rendered by the chat template, ending with the assistant's header when `generation_prompt`.
    Tools, assistant tool calls and tool results are rendered by the template where it writes them in Hermes'
    format, and otherwise written into the messages in that format first (`core/tools.py`)."""
    if tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        if tool_mode(tokenizer) == "native":
            return tokenizer.apply_chat_template(
                tool_format.with_argument_objects(messages),
                tools=list(tools or []) or None,
                tokenize=False,
                add_generation_prompt=generation_prompt,
            )
        messages = tool_format.written(messages, tools)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
) -> list[int]:
    """A conversation rendered and tokenized, ready for the assistant's answer."""
    return tokenizer(render(tokenizer, messages, True, tools), add_special_tokens=False)["input_ids"]


def portable_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The chat template to ship with an export: the tokenizer's own, made to render tools, calls and results
    the way `render` writes them when it ignores tools itself, so vLLM, llama.cpp and transformers users get
    the format the model was trained and served with (`tools.tool_template`)."""
    template = tokenizer.chat_template
    if not template:
        return template
    try:
        written = tool_mode(tokenizer) == "written"
    except tool_format.ToolError:  # a template with its own call format: shipped as it is
        return template
    return tool_format.tool_template(template) if written else template


def tool_mode(tokenizer: PreTrainedTokenizerBase) -> str:
    """How this tokenizer's template takes tools (`tools.template_mode`), probed once per template."""
    template = tokenizer.chat_template or ""
    cached = _tool_modes.get(tokenizer)
    if cached is None or cached[0] != template:
        try:
            probe = tokenizer.apply_chat_template(
                tool_format.PROBE_CONVERSATION, tools=tool_format.PROBE_TOOLS, tokenize=False
            )
        except TemplateError as exc:
            raise tool_format.ToolError(f"the chat template cannot render a tool call: {exc}") from None
        cached = (template, tool_format.template_mode(probe))
        _tool_modes[tokenizer] = cached
    return cached[1]


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    return set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)


def turn_end(tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[int]]:
    """The text and ids of the special tokens the template writes right after an assistant's content."""
    template = tokenizer.chat_template or ""
    cached = _probed.get(tokenizer)
    if cached is None or cached[0] != template:
        cached = (template, *_probe_turn_end(tokenizer)) if template else (template, "", [])
        _probed[tokenizer] = cached
    return cached[1], list(cached[2])


def _probe_turn_end(tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[int]]:
    probe = [{"role": "user", "content": "u"}, {"role": "assistant", "content": _MARK}]
    try:
        text = render(tokenizer, probe, False)
    except TemplateError:  # a template that refuses this conversation: no turn end to learn from it
        return "", []
    if _MARK not in text:
        return "", []
    tail = text[text.rindex(_MARK) + len(_MARK) :]
    special = _special_ids(tokenizer)
    ids = []
    for token in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if token not in special:
            break
        ids.append(token)
    text = "".join(tokenizer.convert_ids_to_tokens(ids))  # a special token's text is its token
    return (text, ids) if tail.startswith(text) else ("", ids)


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> list[int]:
    """Every token that ends an answer: the template's turn end, the EOS, the generation config's EOS ids."""
    configured = getattr(generation_config, "eos_token_id", None)
    configured = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    eos = [tokenizer.eos_token_id]
    return [t for t in dict.fromkeys([*turn_end(tokenizer)[1], *eos, *configured]) if t is not None]


def _span_end(text: str, start: int, closing: str, eos: str) -> int:
    for marker in (closing, eos):
        at = text.rfind(marker, start) if marker else -1
        if at >= 0:
            return at + len(marker)
    return len(text.rstrip())


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    first: int = 0,
    tools: Sequence[dict[str, Any]] | None = None,
) -> tuple[str, list[Span]]:
    """`messages` rendered (with their `tools`), and the character span of every assistant turn from message
    `first` on (a preference pair's answer follows its prompt, whose own assistant turns are context). An
    assistant turn's tool calls are part of its span: the model learns to make them."""
    try:
        return _assistant_spans(tokenizer, messages, first, tools)
    except tool_format.ToolError as exc:
        raise DataError(str(exc)) from None


def _assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    first: int,
    tools: Sequence[dict[str, Any]] | None,
) -> tuple[str, list[Span]]:
    text = render(tokenizer, messages, False, tools)
    closing, eos = turn_end(tokenizer)[0], tokenizer.eos_token or ""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or i < first:
            continue
        prefix = render(tokenizer, messages[:i], True, tools)
        upto = render(tokenizer, messages[: i + 1], False, tools)
        if not text.startswith(prefix) or not text.startswith(upto) or not upto.startswith(prefix):
            raise DataError(
                "the chat template does not render conversations prefix-consistently; "
                "assistant-only labels cannot be located"
            )
        spans.append((len(prefix), _span_end(upto, len(prefix), closing, eos)))
    return text, spans


def answer_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: Sequence[Message], answer: str
) -> tuple[list[int], list[int]]:
    """(context ids, answer ids) of `answer` as the assistant's reply to `prompt`, turn end included."""
    text, spans = assistant_spans(tokenizer, [*prompt, {"role": "assistant", "content": answer}], len(prompt))
    start, end = spans[-1]
    context = tokenizer(text[:start], add_special_tokens=False)["input_ids"]
    enc = tokenizer(text[:end], add_special_tokens=False)["input_ids"]
    if enc[: len(context)] != context:  # the answer's first token merged with the prompt's last
        return context, tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
    return context, enc[len(context) :]
