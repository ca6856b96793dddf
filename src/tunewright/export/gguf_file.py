"""GGUF export for llama.cpp, Ollama and LM Studio: a merged Llama-family model in one file.

Written with the `gguf` package (llama.cpp's own reader/writer) rather than by shelling out
to llama.cpp's `convert_hf_to_gguf.py`, which is not installable and needs a llama.cpp
checkout. What that conversion does for a Llama model is small and spelled out here:

- tensor names from gguf's own name map for the `llama` architecture;
- the query and key projections re-ordered per head from Hugging Face's rotate-half rotary
  layout to GGML's interleaved pairs (`permute_rotary`, undone by `unpermute_rotary`);
- 1-D tensors (norms, biases) kept in F32, matrices in F16 or Q8_0 (rows whose length is not
  a multiple of Q8_0's 32-value block stay F16); a tied output head is left out, llama.cpp
  reuses the token embedding;
- the byte-level BPE vocabulary, merges, special token ids, the chat template and the
  end-of-turn token, so llama.cpp tokenizes, formats and stops like the trained model.

`read_back` opens the written file with gguf's reader and checks every tensor, shape, type
and metadata value against what was meant to be written; it returns the dequantized weights
in Hugging Face names and layout, so parity can run the GGUF's own numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.model_source import ModelSource
from tunewright.export.merged import merged_model

GGUF_TYPES = ("f16", "q8_0")
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
Q8_BLOCK = 32


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise UserError("--format gguf needs the gguf package: pip install gguf") from None
    return gguf


@dataclass
class GGUFPlan:
    """What the file must hold: metadata values, and each tensor's GGUF name, HF name, shape and type."""

    metadata: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...], str]]  # gguf name -> (hf name, hf shape, type name)


def permute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of a q/k projection from rotate-half order (pairs i, i+d/2) to interleaved (2i, 2i+1), per head."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def unpermute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Inverse of `permute_rotary`."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _rotary_heads(name: str, config: Any) -> int | None:
    if ".self_attn.q_proj." in name:
        return config.num_attention_heads
    if ".self_attn.k_proj." in name:
        return config.num_key_value_heads or config.num_attention_heads
    return None


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise UserError(f"--format gguf: rope scaling {kind!r} is not written by this exporter; use --format merged")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    return float(theta if theta is not None else 10000.0)


def _pre_tokenizer(tokenizer: PreTrainedTokenizerBase) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization; only forms it implements exactly."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise UserError("--format gguf supports byte-level BPE tokenizers; this one is not (use --format merged)")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return "gpt-2"
    steps = pre.get("pretokenizers") or []
    if (
        pre.get("type") == "Sequence"
        and [s.get("type") for s in steps] == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        return "smollm"
    raise UserError(
        f"--format gguf: llama.cpp has no exact match for this tokenizer's pre-tokenizer ({pre.get('type')}); "
        "use --format merged"
    )


def _token_types(tokenizer: PreTrainedTokenizerBase, gguf: Any) -> tuple[list[str], list[int]]:
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(len(tokenizer)):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def _merges(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def plan(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str, gguf_type: str) -> GGUFPlan:
    """Decide every metadata value and tensor of the GGUF file for `model`."""
    gguf = _gguf()
    config = model.config
    if not set(config.architectures or [type(model).__name__]) & set(ARCHITECTURES):
        raise UserError(
            f"--format gguf supports Llama-family models ({', '.join(ARCHITECTURES)}); "
            f"this one is {config.architectures}: use --format merged"
        )
    if gguf_type not in GGUF_TYPES:
        raise UserError(f"--gguf-type {gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tokens, types = _token_types(tokenizer, gguf)
    closing = chat.turn_end(tokenizer)[1]
    file_type = gguf.LlamaFileType.MOSTLY_F16 if gguf_type == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    metadata: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": name,
        "general.file_type": int(file_type),
        "llama.vocab_size": len(tokens),
        "llama.context_length": config.max_position_embeddings,
        "llama.embedding_length": config.hidden_size,
        "llama.block_count": config.num_hidden_layers,
        "llama.feed_forward_length": config.intermediate_size,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": config.num_key_value_heads or heads,
        "llama.attention.key_length": head_dim,
        "llama.attention.value_length": head_dim,
        "llama.rope.dimension_count": head_dim,
        "llama.rope.freq_base": _rope_theta(config),
        "llama.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": _pre_tokenizer(tokenizer),
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": _merges(tokenizer),
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": False,
    }
    if tokenizer.bos_token_id is not None:
        metadata["tokenizer.ggml.bos_token_id"] = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else (closing or [None])[0]
    if eos is not None:
        metadata["tokenizer.ggml.eos_token_id"] = eos
    if closing or eos is not None:
        metadata["tokenizer.ggml.eot_token_id"] = closing[-1] if closing else eos
    if tokenizer.pad_token_id is not None:
        metadata["tokenizer.ggml.padding_token_id"] = tokenizer.pad_token_id
    if tokenizer.unk_token_id is not None:
        metadata["tokenizer.ggml.unknown_token_id"] = tokenizer.unk_token_id
    template = chat.portable_template(tokenizer)
    if template:
        metadata["tokenizer.chat_template"] = template
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tensors = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"--format gguf: no GGUF name for tensor {hf_name}; use --format merged")
        kind = "F32" if tensor.dim() == 1 else "F16"
        if kind == "F16" and gguf_type == "q8_0" and tensor.shape[-1] % Q8_BLOCK == 0:
            kind = "Q8_0"
        tensors[gguf_name] = (hf_name, tuple(tensor.shape), kind)
    return GGUFPlan(metadata, tensors)


def _add_metadata(writer: Any, metadata: dict[str, Any]) -> None:
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_array(key, value)


def write_gguf(model: PreTrainedModel, layout: GGUFPlan, path: Path) -> None:
    """Write the planned GGUF file (tensor data streamed, never two copies of the model in memory)."""
    gguf = _gguf()
    writer = gguf.GGUFWriter(path, layout.metadata["general.architecture"])
    _add_metadata(writer, layout.metadata)
    state = model.state_dict()
    for gguf_name, (hf_name, _shape, kind) in layout.tensors.items():
        tensor = state[hf_name].detach().float()
        heads = _rotary_heads(hf_name, model.config)
        if heads is not None:
            tensor = permute_rotary(tensor, heads)
        data = tensor.numpy()
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        writer.add_tensor(gguf_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _field_value(field: Any, gguf: Any) -> Any:
    if not field.types:
        return None
    if field.types[0] == gguf.GGUFValueType.ARRAY:
        return [field.contents(i) for i in range(len(field.data))]
    return field.contents()


def read_back(path: Path, layout: GGUFPlan, config: Any) -> dict[str, torch.Tensor]:
    """Check the file holds exactly the planned metadata and tensors; the weights in HF names and layout."""
    gguf = _gguf()
    reader = gguf.GGUFReader(path)
    problems = []
    for key, expected in layout.metadata.items():
        field = reader.get_field(key)
        got = _field_value(field, gguf) if field is not None else None
        if isinstance(expected, float) and isinstance(got, float):
            same = abs(got - expected) <= 1e-6 * max(1.0, abs(expected))
        else:
            same = got == expected
        if not same:
            problems.append(f"metadata {key}: expected {str(expected)[:60]!r}, read {str(got)[:60]!r}")
    found = {t.name: t for t in reader.tensors}
    if set(found) != set(layout.tensors):
        missing, extra = sorted(set(layout.tensors) - set(found)), sorted(set(found) - set(layout.tensors))
        problems.append(f"tensors missing {missing[:5]}, unexpected {extra[:5]}")
    weights = {}
    for gguf_name, (hf_name, shape, kind) in layout.tensors.items():
        tensor = found.get(gguf_name)
        if tensor is None:
            continue
        if tensor.tensor_type.name != kind or tuple(int(n) for n in reversed(tensor.shape)) != shape:
            problems.append(
                f"tensor {gguf_name}: expected {kind} {list(shape)}, read {tensor.tensor_type.name} "
                f"{list(reversed(tensor.shape.tolist()))}"
            )
            continue
        values = torch.from_numpy(np.array(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32))
        values = values.reshape(shape)
        heads = _rotary_heads(hf_name, config)
        weights[hf_name] = unpermute_rotary(values, heads) if heads is not None else values
    if problems:
        raise CheckFailed(f"{path.name} does not read back as written: " + "; ".join(problems[:5]))
    return weights


def readback_model_dir(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, weights: dict[str, torch.Tensor], out: Path
) -> Path:
    """A Hugging Face model directory holding the GGUF's dequantized weights, for greedy parity."""
    state = {k: v.to(model.dtype) for k, v in weights.items()}
    missing = set(model.state_dict()) - set(state)
    if model.config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing:
        raise CheckFailed(f"the GGUF file lacks tensors for {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def export_gguf(source: ModelSource, out_dir: Path, name: str, gguf_type: str, scratch: Path) -> tuple[Path, Path]:
    """Merge `source` and write `<name>-<type>.gguf` in `out_dir`; check it reads back exactly as planned
    and write its dequantized weights as a Hugging Face model in `scratch` (for greedy parity).
    Returns (the GGUF file, the read-back model directory)."""
    model, tokenizer = merged_model(source)
    layout = plan(model, tokenizer, name, gguf_type)
    path = out_dir / f"{name}-{gguf_type}.gguf"
    write_gguf(model, layout, path)
    weights = read_back(path, layout, model.config)
    return path, readback_model_dir(model, tokenizer, weights, scratch)
