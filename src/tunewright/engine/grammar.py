"""Grammar-constrained decoding: answers that must be JSON matching a schema, any JSON object, a regex or a
Lark grammar (OpenAI's `response_format`, vLLM's `structured_outputs`).

Each constrained request gets a matcher for its grammar. Every step the engine asks each constrained
row's matcher which tokens may come next, sets the others' logits to -inf (so greedy picks, sampling
and log-probs all see only allowed tokens), and feeds the chosen token back. The end-of-answer tokens
are allowed exactly where the grammar may end, so an answer that stops by itself is complete; one cut
by `max_tokens` ends with finish reason `length`, as OpenAI's does.

The backend is llguidance, chosen over xgrammar (`benchmarks/grammar_backends.py`, SmolLM2's 49k
vocabulary): both compute a token mask in microseconds (a p50 of 17 µs against 1.5 µs per token; a
decode step of 32 requests takes 40-60 ms), but llguidance refuses the schema keywords it cannot
enforce and names them, where xgrammar 0.2.9 compiled `allOf`, `uniqueItems`, `not` and `if`/`then`
and then let answers that break them through; and llguidance has no dependencies, where xgrammar
pins its own torch and triton. A schema we cannot enforce is refused before the request runs
(`GrammarError`, a 400 in the server), never answered unconstrained.

JSON is written with `", "` and `": "` between items and keys (as `json.dumps` writes it, and as most
JSON a model has read is written) and no other whitespace: a grammar that allowed any whitespace
would let a small model fill its answer with newlines.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
import llguidance
import llguidance.hf
import numpy as np
import torch
from llguidance.gbnf_to_lark import GbnfToLarkError, any_to_lark
from transformers import PreTrainedTokenizerBase

from tunewright.core.tools import CALL_CLOSE, CALL_OPEN

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class GrammarError(ValueError):
    """A grammar or schema that cannot be enforced; the message says why."""


@dataclass(frozen=True)
class Grammar:
    """What an answer must match: `text` is the backend's grammar, `kind` what it came from (for messages)."""

    kind: str  # json_schema | json_object | regex | grammar | tool calls
    text: str


def json_schema(schema: dict[str, Any] | bool | str) -> Grammar:
    """JSON valid against `schema` (a dict, a boolean schema, or its JSON text)."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise GrammarError(f"the schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict | bool):
        raise GrammarError("a JSON schema is an object (or true / false)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise GrammarError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    return Grammar("json_schema", llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS))


def json_object() -> Grammar:
    """Any JSON object (`response_format: {"type": "json_object"}`)."""
    return Grammar("json_object", llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, JSON_OPTIONS))


def regex(pattern: str) -> Grammar:
    """Text matching `pattern` as a whole."""
    return Grammar("regex", llguidance.LLMatcher.grammar_from_regex(pattern))


def lark(text: str) -> Grammar:
    """Text in the language of a grammar: Lark (llguidance's dialect, `start: ...`) or GBNF (llama.cpp's and
    vLLM's, `root ::= ...`), which is translated to Lark."""
    try:
        text = any_to_lark(text)
    except GbnfToLarkError as exc:
        raise GrammarError(f"not a valid GBNF grammar: {exc}") from None
    return Grammar("grammar", llguidance.LLMatcher.grammar_from_lark(text))


def tool_calls(functions: dict[str, dict[str, Any]], required: bool, parallel: bool) -> Grammar:
    """Tool calls in Hermes' format (`core/tools.py`), each naming one of `functions` (name -> OpenAI function,
    with `parameters`) with arguments valid against that function's parameters; one call, or several on
    separate lines when `parallel`. Unless `required`, the answer may be text instead (text that does not start
    with `<`, so it cannot be a call gone wrong)."""
    rules = []
    for i, (name, function) in enumerate(functions.items()):
        parameters = dict(function["parameters"])
        definitions = {k: parameters.pop(k) for k in ("$defs", "definitions") if k in parameters}  # refs stay valid
        call = {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
            "x-guidance": JSON_OPTIONS,
            **definitions,
        }
        rules.append(f"fn{i}: %json {json.dumps(call)}")
    calls = 'call ("\\n" call)*' if parallel else "call"
    alternatives = " | ".join(f"fn{i}" for i in range(len(functions)))
    lines = [
        "%llguidance {}",
        f"start: calls{'' if required else ' | TEXT'}",
        f"calls: {calls}",
        f"call: {json.dumps(CALL_OPEN)} ({alternatives}) {json.dumps(CALL_CLOSE)}",
        *rules,
        "TEXT: /[^<](?s:.)*/",
    ]
    return Grammar("tool calls", llguidance.LLMatcher.grammar_from_lark("\n".join(lines)))


class Matcher:
    """One request's place in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab = vocab_size
        self._words = np.empty((vocab_size + 31) // 32, dtype=np.int32)

    def allowed(self) -> torch.Tensor:
        """Which tokens may come next, as a bool tensor over the vocabulary."""
        self._matcher.unsafe_compute_mask_ptr(self._words.ctypes.data, self._words.nbytes)
        bits = np.unpackbits(self._words.view(np.uint8), bitorder="little")[: self._vocab]
        return torch.from_numpy(bits.view(np.bool_))

    def consume(self, token: int) -> None:
        """Advance past `token` (one the mask allowed)."""
        if not self._matcher.consume_token(token):
            raise GrammarError(f"the grammar refused token {token}: {self._matcher.get_error()}")

    @property
    def error(self) -> str | None:
        return self._matcher.get_error() if self._matcher.is_error() else None


class Grammars:
    """Grammars checked and matched against one model's tokenizer. The tokenizer's backend form (about 0.4 s
    to build for a 49k vocabulary) is built on first use; checks are cached per grammar."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, eos_ids: set[int]) -> None:
        self._hf, self._vocab, self._eos = tokenizer, vocab_size, sorted(eos_ids)
        self._backend: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()
        self.check = lru_cache(maxsize=256)(self._check)

    def _tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._backend is None:
                try:
                    self._backend = llguidance.hf.from_tokenizer(self._hf, n_vocab=self._vocab, eos_token=self._eos)
                except ValueError as exc:  # a slow (Python) tokenizer has no form the backend reads
                    raise GrammarError(f"constrained decoding needs a fast tokenizer: {exc}") from None
            return self._backend

    def _check(self, grammar: Grammar) -> None:
        """Raise `GrammarError` saying why `grammar` cannot be enforced (an unsupported keyword, a bad regex)."""
        failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar.text, self._tokenizer())
        if failed:
            raise GrammarError(f"cannot enforce this {grammar.kind.replace('_', ' ')}: {messages[0]}")

    def start(self, grammar: Grammar) -> Matcher:
        """A matcher at the start of `grammar` (checked first)."""
        self.check(grammar)
        matcher = llguidance.LLMatcher(self._tokenizer(), grammar.text, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Matcher(matcher, self._vocab)
