"""One chat module: every site (training labels, engine stops, export stops, GGUF metadata) agrees on where a
turn ends, on the tiny template and on templates shaped like Llama-3's and Qwen2.5's, whose end of turn is not
their EOS. The Jinja below is the models' published chat template text."""

import pytest
from transformers import GenerationConfig, PreTrainedTokenizerFast

from tunewright.core import chat
from tunewright.core.model_source import ModelSource
from tunewright.core.records import Conversation, Message
from tunewright.demo.tiny_model import CHAT_TEMPLATE, build_model, build_tokenizer
from tunewright.engine.engine import Engine
from tunewright.engine.requests import EngineConfig
from tunewright.export.gguf_file import plan
from tunewright.export.merged import export_model
from tunewright.train.data import IGNORE, tokenize_conversation

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""  # noqa: E501

TEXTS = ["How do I reset my password?", "Open settings, choose security, then reset.", "Thanks, that worked."] * 20

# name: (special tokens, eos, bos, pad, template, the token that ends an assistant turn)
SHAPES = {
    "tiny": (["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>", None, "<|pad|>",
             CHAT_TEMPLATE, "<|im_end|>"),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|end_of_text|>", "<|begin_of_text|>", "<|end_of_text|>", LLAMA3_TEMPLATE, "<|eot_id|>"),
    "qwen2.5": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>", None, "<|endoftext|>",
                QWEN25_TEMPLATE, "<|im_end|>"),
}  # fmt: skip

CONVERSATION = [
    {"role": "user", "content": "How do I reset my password?"},
    {"role": "assistant", "content": "Open settings, choose security, then reset."},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "Glad it worked."},
]


def tokenizer_shaped(name: str) -> PreTrainedTokenizerFast:
    special, eos, bos, pad, template, _ = SHAPES[name]
    return build_tokenizer(TEXTS, 400, tuple(special), eos=eos, pad=pad, bos=bos, template=template)


@pytest.fixture(params=list(SHAPES))
def shaped(request, tmp_path):
    """A tokenizer of each shape and a small random Llama whose generation config names only the EOS (as a base
    model's does), saved as a model directory."""
    tok = tokenizer_shaped(request.param)
    model = build_model(tok, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                        num_key_value_heads=1)  # fmt: skip
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    return request.param, tok, model, tmp_path / "base"


def test_every_site_ends_a_turn_on_the_templates_end_of_turn(shaped, tmp_path):
    name, tok, model, base = shaped
    closing = tok.convert_tokens_to_ids(SHAPES[name][5])
    assert chat.turn_end(tok)[1] == [closing]
    stops = chat.end_of_turn_ids(tok, model.generation_config)
    assert closing in stops and tok.eos_token_id in stops

    conv = Conversation([Message(m["role"], m["content"]) for m in CONVERSATION], "c", "test")
    example = tokenize_conversation(tok, conv, max_length=512)
    labelled = [t for t in example.labels if t != IGNORE]
    assert labelled.count(closing) == 2 and labelled[-1] == closing  # each answer trains its end of turn

    context, answer = chat.answer_ids(tok, CONVERSATION[:1], CONVERSATION[1]["content"])
    assert answer[-1] == closing and context == chat.prompt_ids(tok, CONVERSATION[:1])

    engine = Engine(model, tok, EngineConfig(max_model_len=256))
    try:
        assert engine.eos_ids == set(stops)
    finally:
        engine.shutdown()

    export_model(ModelSource("m", str(base)), "merged", tmp_path / "merged")
    written = GenerationConfig.from_pretrained(tmp_path / "merged").eos_token_id
    assert set(written if isinstance(written, list) else [written]) == set(stops)
    assert plan(model, tok, "m", "f16").metadata["tokenizer.ggml.eot_token_id"] == closing


def test_the_answer_span_covers_the_answer_and_its_turn_end_only(shaped):
    name, tok, _, _ = shaped
    text, spans = chat.assistant_spans(tok, CONVERSATION)
    closing = SHAPES[name][5]
    assert [text[a:b] for a, b in spans] == [CONVERSATION[1]["content"] + closing, "Glad it worked." + closing]
    assert chat.render(tok, CONVERSATION[:1], True).endswith(text[: spans[0][0]][-6:])


def test_a_template_without_special_turn_end_falls_back_to_the_eos_then_the_text():
    tok = tokenizer_shaped("tiny")
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" + (
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    assert chat.turn_end(tok) == ("", [])
    text, spans = chat.assistant_spans(tok, CONVERSATION[:2])
    assert text[spans[0][0] : spans[0][1]] == CONVERSATION[1]["content"]
    assert chat.end_of_turn_ids(tok) == [tok.eos_token_id]
