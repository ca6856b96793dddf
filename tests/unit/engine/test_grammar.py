"""Grammar-constrained decoding: what is refused before a request runs, and what the engine then produces."""

import json
import re

import jsonschema
import pytest
from transformers import AutoModelForCausalLM

from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig, SamplingParams
from tunewright.engine.grammar import GrammarError, json_object, json_schema, lark, regex

PROMPT = [{"role": "user", "content": "The table hr.payroll is stale. Open an incident."}]
INCIDENT = {  # a finite language: every answer that ends by itself is complete and valid
    "type": "object",
    "properties": {
        "severity": {"enum": ["low", "medium", "high"]},
        "page_on_call": {"type": "boolean"},
        "table": {"type": "string", "pattern": "^[a-z]+\\.[a-z]+$", "maxLength": 12},
    },
    "required": ["severity", "page_on_call", "table"],
    "additionalProperties": False,
}


def build(tiny_base):
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    return Engine(model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=8, max_model_len=512))


@pytest.fixture(scope="module")
def engine(tiny_base):
    engine = build(tiny_base)
    yield engine
    engine.shutdown()


def run(engine, params, n=1, messages=PROMPT):
    return engine.generate([engine.chat_prompt(messages)] * n, params)


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: json_schema({"type": "strin"}), "not a valid JSON Schema at type"),
        (lambda: json_schema({"type": "object", "properties": {"a": {"minimum": "x"}}}), "properties/a/minimum"),
        (lambda: json_schema("{not json"), "the schema is not valid JSON"),
        (lambda: json_schema({"type": "array", "uniqueItems": True}), 'Unimplemented keys: ["uniqueItems"]'),
        (lambda: json_schema({"not": {"type": "integer"}}), 'Unimplemented keys: ["not"]'),
        (lambda: regex("[a-"), "unclosed character class"),
        (lambda: lark("root ::= ("), "not a valid GBNF grammar"),
    ],
)
def test_what_cannot_be_enforced_is_refused_with_the_reason(engine, make, names):
    with pytest.raises(GrammarError, match=re.escape(names)):
        engine.grammars.check(make())


def test_sampled_answers_to_a_schema_all_validate(engine):
    """Temperature 1 on a barely trained model: left alone it writes anything; constrained, every answer is
    schema-valid JSON and ends by itself."""
    outs = run(engine, SamplingParams(max_tokens=60, temperature=1.0, grammar=json_schema(INCIDENT)), n=24)
    for out in outs:
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), INCIDENT)
        assert '", "' in out.text or '": ' in out.text  # json.dumps' separators, no other whitespace
    free = run(engine, SamplingParams(max_tokens=60, temperature=1.0), n=8)
    assert not any(_is_json(o.text) for o in free)  # the constraint is what makes them valid


def test_an_answer_cut_by_max_tokens_says_length(engine):
    long_strings = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}
    out = run(engine, SamplingParams(max_tokens=6, temperature=0, grammar=json_schema(long_strings)))[0]
    assert out.finish_reason == "length" and out.completion_tokens == 6
    assert out.text.startswith('{"no') and not _is_json(out.text)


def test_min_tokens_does_not_hold_back_a_complete_answer(engine):
    out = run(engine, SamplingParams(max_tokens=60, min_tokens=50, grammar=json_schema(INCIDENT)))[0]
    assert out.finish_reason == "stop"
    jsonschema.validate(json.loads(out.text), INCIDENT)


def test_regex_grammar_and_any_json_object(engine):
    code = run(engine, SamplingParams(max_tokens=20, temperature=1.0, grammar=regex("INC-[0-9]{4}")), n=6)
    assert all(re.fullmatch("INC-[0-9]{4}", o.text) and o.finish_reason == "stop" for o in code)
    verdict = run(engine, SamplingParams(max_tokens=8, temperature=1.0, grammar=lark('root ::= "yes" | "no"')), n=6)
    assert {o.text for o in verdict} <= {"yes", "no"}
    obj = run(engine, SamplingParams(max_tokens=40, grammar=json_object()))[0]
    assert obj.text.startswith("{") and (obj.finish_reason == "length" or isinstance(json.loads(obj.text), dict))


def test_constrained_rows_leave_the_other_rows_of_a_batch_alone(engine, tiny_base):
    """Masks are per row: free answers decoded in one batch beside constrained ones are the ones decoded alone."""
    prompt = engine.chat_prompt(PROMPT)
    alone = engine.generate([prompt], SamplingParams(max_tokens=24))[0].text
    engine = build(tiny_base)
    results = {}

    def keep(key):
        def on_event(out):
            results.setdefault(key, []).append(out)

        return on_event

    constrained = SamplingParams(max_tokens=80, grammar=json_schema(INCIDENT))
    free = SamplingParams(max_tokens=24)
    for i, params in enumerate([constrained, free, constrained, free]):
        engine.submit(prompt, params, keep(i))
    engine.shutdown(drain=True, timeout=60)
    text = {k: "".join(o.text for o in v) for k, v in results.items()}
    assert text[1] == alone and text[3] == alone
    assert all(_is_json(text[k]) for k in (0, 2))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
