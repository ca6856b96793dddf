"""GGUF writing pieces: the rotary re-ordering llama.cpp expects, what the exporter refuses,
and a read-back that notices a file that is not what was planned."""

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from tunewright.core import chat
from tunewright.core.errors import CheckFailed, UserError
from tunewright.export.gguf_file import permute_rotary, plan, read_back, unpermute_rotary, write_gguf


def test_rotary_rows_move_from_rotate_half_pairs_to_adjacent_pairs():
    heads, head_dim = 2, 8
    rows = torch.arange(heads * head_dim, dtype=torch.float32)[:, None].expand(-1, 3)
    out = permute_rotary(rows, heads)
    for h in range(heads):
        for i in range(head_dim // 2):
            # HF rotates row i with row i + d/2 of each head; GGML rotates rows 2i and 2i+1
            assert out[h * head_dim + 2 * i, 0] == h * head_dim + i
            assert out[h * head_dim + 2 * i + 1, 0] == h * head_dim + i + head_dim // 2
    assert torch.equal(unpermute_rotary(out, heads), rows)
    bias = torch.randn(heads * head_dim)
    assert torch.equal(unpermute_rotary(permute_rotary(bias, heads), heads), bias)


@pytest.fixture(scope="module")
def tiny(tiny_base):
    return AutoModelForCausalLM.from_pretrained(tiny_base), AutoTokenizer.from_pretrained(tiny_base)


def test_the_plan_keeps_norms_in_f32_and_leaves_out_a_tied_head(tiny):
    model, tokenizer = tiny
    layout = plan(model, tokenizer, "t", "q8_0")
    kinds = {name: kind for name, (_, _, kind) in layout.tensors.items()}
    assert kinds["blk.0.attn_norm.weight"] == kinds["output_norm.weight"] == "F32"
    assert kinds["blk.0.attn_q.weight"] == kinds["token_embd.weight"] == "Q8_0"
    assert "output.weight" not in kinds  # tied: llama.cpp reuses token_embd
    assert len(kinds) == 2 + 9 * model.config.num_hidden_layers
    meta = layout.metadata
    assert meta["tokenizer.ggml.tokens"][: len(tokenizer)] == tokenizer.convert_ids_to_tokens(range(len(tokenizer)))
    assert meta["tokenizer.ggml.eot_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.chat_template"] == chat.portable_template(tokenizer)  # renders tools as we do
    assert meta["tokenizer.ggml.pre"] == "gpt-2"


def test_the_plan_refuses_what_it_cannot_write_exactly(tiny):
    model, tokenizer = tiny
    with pytest.raises(UserError, match="--gguf-type 'q4_k'"):
        plan(model, tokenizer, "t", "q4_k")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer)))
    with pytest.raises(UserError, match="Llama-family"):
        plan(gpt2, tokenizer, "t", "f16")
    config = model.config.to_dict()
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    config.update(rope_scaling={**scaling, "original_max_position_embeddings": 256})
    config.update(rope_parameters={**config["rope_scaling"], "rope_theta": 10000.0})
    scaled = LlamaForCausalLM(LlamaConfig(**config))
    with pytest.raises(UserError, match="rope scaling 'llama3'"):
        plan(scaled, tokenizer, "t", "f16")


def test_read_back_names_what_differs_from_the_plan(tiny, tmp_path):
    model, tokenizer = tiny
    layout = plan(model, tokenizer, "t", "f16")
    path = tmp_path / "t.gguf"
    write_gguf(model, layout, path)
    weights = read_back(path, layout, model.config)
    q = model.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(weights["model.layers.0.self_attn.q_proj.weight"], q.half().float())
    layout.metadata["llama.block_count"] += 1
    with pytest.raises(CheckFailed, match=r"metadata llama\.block_count"):
        read_back(path, layout, model.config)
    layout.metadata["llama.block_count"] -= 1
    hf_name, shape, _ = layout.tensors["blk.0.ffn_up.weight"]
    layout.tensors["blk.0.ffn_up.weight"] = (hf_name, shape, "Q8_0")
    with pytest.raises(CheckFailed, match=r"tensor blk\.0\.ffn_up\.weight: expected Q8_0"):
        read_back(path, layout, model.config)
