"""Grammar backends for constrained decoding, side by side: llguidance (what the engine uses) vs xgrammar (vLLM's
default), on one model's tokenizer.

Two questions decide the backend. Speed: the time to compute one token mask while a JSON answer is written
token by token (every constrained row of every decode step pays it). Coverage: for each JSON Schema
feature, whether a backend enforces it (an instance that breaks only that feature is refused), refuses the
schema (an error naming the feature, which the server turns into a 400), or silently ignores it (the
breaking instance goes through: an answer that does not validate, with a 200).

    python benchmarks/grammar_backends.py --model smollm2

xgrammar pins its own torch and triton, so it is not a dependency: run this where both are installed,
e.g. a scratch environment (`python -m venv /tmp/g && /tmp/g/bin/pip install llguidance xgrammar
transformers`); a backend that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

INCIDENT = {
    "type": "object",
    "properties": {
        "table": {"type": "string"},
        "severity": {"type": "string", "enum": ["low", "medium", "high"]},
        "owner": {"type": "string"},
        "rows": {"type": "integer"},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["table", "severity", "owner"],
    "additionalProperties": False,
}
ANSWER = {"table": "orders_daily", "severity": "high", "owner": "data-platform", "rows": 1200, "notes": ["late"]}
SEPARATORS = (", ", ": ")

# feature -> (schema, an instance that breaks only that feature)
FEATURES: dict[str, tuple[object, object]] = {
    "pattern": ({"type": "string", "pattern": "^[a-z]+$"}, "ABC"),
    "minLength": ({"type": "string", "minLength": 5}, "ab"),
    "maxLength": ({"type": "string", "maxLength": 2}, "abcdef"),
    "minimum": ({"type": "integer", "minimum": 10}, 3),
    "exclusiveMaximum": ({"type": "number", "exclusiveMaximum": 1}, 5),
    "multipleOf": ({"type": "integer", "multipleOf": 5}, 7),
    "format: date": ({"type": "string", "format": "date"}, "yesterday"),
    "format: email": ({"type": "string", "format": "email"}, "nope"),
    "enum": ({"enum": ["a", "b"]}, "c"),
    "const": ({"const": "a"}, "b"),
    "anyOf": ({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, "x"),
    "oneOf": ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, True),
    "allOf": (
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
        {"a": 1},
    ),
    "$ref / $defs": (
        {"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/n"}}},
        {"x": "s"},
    ),
    "additionalProperties: false": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        {"a": 1, "b": 2},
    ),
    "additionalProperties: schema": ({"type": "object", "additionalProperties": {"type": "integer"}}, {"a": "x"}),
    "required": ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {}),
    "minItems": ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, [1]),
    "maxItems": ({"type": "array", "items": {"type": "integer"}, "maxItems": 1}, [1, 2]),
    "uniqueItems": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1]),
    "prefixItems": (
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        [1, 2],
    ),
    "type: [..., null]": ({"type": ["integer", "null"]}, "x"),
    "not": ({"not": {"type": "integer"}}, 3),
    "if / then": ({"if": {"type": "integer"}, "then": {"minimum": 5}}, 3),
    "patternProperties": (
        {"type": "object", "patternProperties": {"^x_": {"type": "integer"}}, "additionalProperties": False},
        {"y": 1},
    ),
    "minProperties": ({"type": "object", "minProperties": 1}, {}),
    "dependentRequired": ({"type": "object", "dependentRequired": {"a": ["b"]}}, {"a": 1}),
    "contains": ({"type": "array", "contains": {"const": 1}}, [2]),
}


class Backend:
    """One backend: compile a schema (None + message when refused), then step a matcher through tokens."""

    name = ""

    def compile(self, schema: object) -> tuple[object | None, str]:
        raise NotImplementedError

    def mask_times(self, compiled: object, tokens: list[int]) -> list[float]:
        raise NotImplementedError

    def accepts(self, compiled: object, tokens: list[int]) -> bool:
        raise NotImplementedError


class LLGuidance(Backend):
    name = "llguidance"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab: int) -> None:
        import llguidance
        import llguidance.hf

        self.lib = llguidance
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
        self.options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def compile(self, schema: object) -> tuple[object | None, str]:
        grammar = self.lib.LLMatcher.grammar_from_json_schema(schema, defaults=self.options)
        failed, messages = self.lib.LLMatcher.validate_grammar_with_warnings(grammar, self.tokenizer)
        return (None, messages[0]) if failed else (grammar, "")

    def mask_times(self, compiled: object, tokens: list[int]) -> list[float]:
        matcher = self.lib.LLMatcher(self.tokenizer, compiled, log_level=0)
        times = []
        for token in tokens:
            start = time.perf_counter()
            matcher.compute_bitmask()
            times.append(time.perf_counter() - start)
            if not matcher.consume_token(token):
                raise RuntimeError(f"llguidance refused the answer's token {token}")
        return times

    def accepts(self, compiled: object, tokens: list[int]) -> bool:
        matcher = self.lib.LLMatcher(self.tokenizer, compiled, log_level=0)
        return matcher.consume_tokens(tokens) and not matcher.is_error()


class XGrammar(Backend):
    name = "xgrammar"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab: int) -> None:
        import xgrammar

        self.lib = xgrammar
        self.compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab))
        self.bitmask = xgrammar.allocate_token_bitmask(1, vocab)

    def compile(self, schema: object) -> tuple[object | None, str]:
        try:
            text = json.dumps(schema)
            return self.compiler.compile_json_schema(text, any_whitespace=False, separators=SEPARATORS), ""
        except Exception as exc:  # xgrammar raises its own RuntimeError subclasses
            return None, str(exc).splitlines()[-1]

    def mask_times(self, compiled: object, tokens: list[int]) -> list[float]:
        matcher = self.lib.GrammarMatcher(compiled)
        times = []
        for token in tokens:
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(self.bitmask)
            times.append(time.perf_counter() - start)
            if not matcher.accept_token(token):
                raise RuntimeError(f"xgrammar refused the answer's token {token}")
        return times

    def accepts(self, compiled: object, tokens: list[int]) -> bool:
        matcher = self.lib.GrammarMatcher(compiled)
        return all(matcher.accept_token(t) for t in tokens)


def model_dir(name: str) -> Path:
    if name == "smollm2":
        from tunewright.demo.real_model import prepare_smollm2

        return prepare_smollm2()
    return Path(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="smollm2 | a model directory (its tokenizer is used)")
    args = ap.parse_args()
    path = model_dir(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = json.loads((path / "config.json").read_text())["vocab_size"]

    def encode(value: object) -> list[int]:
        return tokenizer(json.dumps(value), add_special_tokens=False)["input_ids"]  # json.dumps' separators

    backends: list[Backend] = []
    for kind in (LLGuidance, XGrammar):
        try:
            backends.append(kind(tokenizer, vocab))
        except ImportError as exc:
            print(f"{kind.name}: not installed ({exc})")
    answer = encode(ANSWER)
    print(f"mask time per token while writing a {len(answer)}-token JSON answer ({path.name}, vocabulary {vocab}):")
    for backend in backends:
        compiled, message = backend.compile(INCIDENT)
        assert compiled is not None, message
        times = sorted(backend.mask_times(compiled, answer)[1:])  # the first mask builds lazy state
        p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
        print(f"  {backend.name:<11} p50 {p50 * 1e6:6.1f} us, p95 {p95 * 1e6:6.1f} us")
    print("schema features (an instance breaking only the feature):")
    print(f"  {'feature':<30}" + "".join(f"{b.name:<46}" for b in backends))
    ignored = dict.fromkeys((b.name for b in backends), 0)
    for feature, (schema, bad) in FEATURES.items():
        cells = []
        for backend in backends:
            compiled, message = backend.compile(schema)
            if compiled is None:
                cells.append(f"refused: {message[:36]}")
            elif backend.accepts(compiled, [*encode(bad), tokenizer.eos_token_id]):
                cells.append("IGNORED (breaking instance passes)")
                ignored[backend.name] += 1
            else:
                cells.append("enforced")
        print(f"  {feature:<30}" + "".join(f"{c:<46}" for c in cells))
    print("silently ignored features: " + ", ".join(f"{name} {n}" for name, n in ignored.items()))


if __name__ == "__main__":
    main()
