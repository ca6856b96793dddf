"""Forward passes for Llama-family models (Llama, Mistral, Qwen2) over a flat batch with a slot KV cache.

Why not `model(...)`: the transformers forward wants a padded batch and its own cache, so a
continuous batch would pay for padding and per-request cache objects. This runner reuses the
model's own modules and weights (norms, rotary embedding, activation) and does the rest
itself, in one pass per step over every request's tokens laid end to end:

- q/k/v and gate/up are one GEMM each (their weights concatenated once), and on CPUs every
  projection and the LM head run from weights prepacked for oneDNN, which streams them from
  memory 1.6-3x faster than `F.linear` (MKL) does at decode batch sizes, in the same fp32
  arithmetic (the runner takes the model over: its dense projection weights are released);
- new keys and values go straight into the request's cache slot;
- single-token (decode) rows attend together over the cache with a length mask, the query
  heads that share a key head as that head's rows (its keys are read once, not per query head); longer
  (prefill) chunks attend one at a time with a causal mask offset by what is cached;
- LoRA adapters add their low-rank deltas per row group (`lora.py`);
- the final norm and the LM head run only on the rows whose logits are needed.

On a CUDA GPU the same code runs on the model's device: every tensor of a step is made there,
projections are plain `F.linear` (cuBLAS) and attention is PyTorch's SDPA (its flash or
memory-efficient kernels); decode steps are not captured as CUDA graphs.

The arithmetic is the model's (same modules, same order of operations per row), so greedy
answers match `generate` up to floating-point summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from tunewright.engine.batch import StepBatch
from tunewright.engine.kv_cache import SlotKVCache
from tunewright.engine.lora import LoraSet
from tunewright.engine.norm import Norm

SUPPORTED = ("llama", "mistral", "qwen2")


def unsupported_reason(model: PreTrainedModel) -> str | None:
    """Why this runner cannot run `model` (None when it can)."""
    config = model.config
    if config.model_type not in SUPPORTED:
        return f"model type {config.model_type!r} is not one of {', '.join(SUPPORTED)}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "the module layout is not LlamaModel's"
    return None


PACK_MIN_ELEMENTS = 1 << 17  # below this (tiny models) oneDNN's per-call cost outweighs its faster streaming


def _packable(weight: torch.Tensor) -> bool:
    """Whether oneDNN can prepack `weight`: fp32 anywhere, bf16 only on CPUs with its bf16 path
    (AVX-512 BW/VL/DQ or AVX-NE-CONVERT; elsewhere the reorder refuses and F.linear emulates bf16)."""
    dtypes = (torch.float32, torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)
    return (
        weight.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and weight.dtype in dtypes
        and weight.numel() >= PACK_MIN_ELEMENTS
    )


class Projection:
    """`x W^T + b` for one or several concatenated Linear layers, prepacked for oneDNN on CPUs."""

    def __init__(self, linears: list[torch.nn.Linear], release: bool = True) -> None:
        weight = torch.cat([m.weight.data for m in linears]) if len(linears) > 1 else linears[0].weight.data
        has_bias = linears[0].bias is not None
        self.bias = torch.cat([m.bias.data for m in linears]) if has_bias and len(linears) > 1 else linears[0].bias
        self.bias = self.bias.data if self.bias is not None else None
        self.packed = _packable(weight)
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight) if self.packed else weight
        if release and (self.packed or len(linears) > 1):
            for m in linears:  # the packed or concatenated copy is the only one kept
                m.weight.data = torch.empty(0, dtype=weight.dtype, device=weight.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


@dataclass
class _Layer:
    input_norm: Norm
    qkv: Projection
    o: Projection
    post_norm: Norm
    gate_up: Projection
    down: Projection


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: x * cos + rotate_half(x) * sin, with rotate_half's sign folded into `signed_sin`
    (`signed`), so the halves swap in one `roll`; the same products and sum, bit for bit."""
    out = x * cos
    out += x.roll(x.shape[-1] // 2, -1) * signed_sin
    return out


def signed(sin: torch.Tensor) -> torch.Tensor:
    """`sin` with its first half negated: rotate_half(x) * sin == roll(x, half) * signed(sin)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


class LlamaRunner:
    def __init__(self, model: PreTrainedModel, slots: int, max_len: int) -> None:
        self.model = model.eval()
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        inner = model.model
        self.embed, self.final_norm, self.rotary = inner.embed_tokens, Norm(inner.norm), inner.rotary_emb
        self.vocab_size = model.lm_head.weight.shape[0]
        self.intermediate = inner.layers[0].mlp.gate_proj.weight.shape[0]
        tied = model.lm_head.weight.data_ptr() == self.embed.weight.data_ptr()
        self.lm_head = Projection([model.lm_head], release=not tied)  # tied: the embedding still needs it
        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = Projection([attn.q_proj, attn.k_proj, attn.v_proj])
            gate_up = Projection([mlp.gate_proj, mlp.up_proj])
            o, down = Projection([attn.o_proj]), Projection([mlp.down_proj])
            self.layers.append(
                _Layer(Norm(layer.input_layernorm), qkv, o, Norm(layer.post_attention_layernorm), gate_up, down)
            )
        self.act = inner.layers[0].mlp.act_fn
        dtype, device = self.embed.weight.dtype, self.embed.weight.device
        self.device = device
        self.cache = SlotKVCache(len(self.layers), slots, max_len, self.kv_heads, self.head_dim, dtype, device)
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        self.qkv_split = {"q_proj": (0, q_out), "k_proj": (q_out, q_out + kv_out), "v_proj": (q_out + kv_out, None)}
        hidden = config.hidden_size
        self.lora = LoraSet(
            {
                "q_proj": (hidden, q_out),
                "k_proj": (hidden, kv_out),
                "v_proj": (hidden, kv_out),
                "o_proj": (q_out, hidden),
                "gate_proj": (hidden, self.intermediate),
                "up_proj": (hidden, self.intermediate),
                "down_proj": (self.intermediate, hidden),
            },
            len(self.layers),
            dtype,
            device,
        )

    def release(self, slot: int) -> None:
        self.cache.release(slot)

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of a slot's keys and values into another slot."""
        for keys, values in zip(self.cache.keys, self.cache.values, strict=True):
            keys[target, :, :length] = keys[source, :, :length]
            values[target, :, :length] = values[source, :, :length]

    @torch.inference_mode()
    def forward(self, batch: StepBatch) -> torch.Tensor:
        """Run every row of `batch` through the model; returns the logits of `batch.logit_rows` in the model's dtype
        (the engine widens to float32 only the rows it samples or scores)."""
        n = batch.input_ids.shape[0]
        x = self.embed(batch.input_ids)
        cos, sin = self.rotary(x, batch.positions[None])
        cos, sin = cos[0, :, None, :], signed(sin[0, :, None, :])
        slots, positions = batch.slots(), batch.positions
        groups = self.lora.groups(batch.adapters()) if self.lora.weights else []
        decodes = batch.decodes
        attend = _DecodeAttention(batch, decodes, self.cache.max_len) if decodes else None
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        only_decodes = decodes == len(batch.segments)
        down = None
        for i, layer in enumerate(self.layers):
            h = layer.input_norm(x) if down is None else layer.input_norm.add(x, down)  # the last layer's MLP
            qkv = layer.qkv(h)
            for proj, (a, b) in self.qkv_split.items():
                if groups:
                    self.lora.apply(i, proj, h, qkv[:, a:b], groups)
            qk = _rotate(qkv[:, : q_out + kv_out].view(n, self.heads + self.kv_heads, self.head_dim), cos, sin)
            q, k = qk[:, : self.heads], qk[:, self.heads :]
            v = qkv[:, q_out + kv_out :].view(n, self.kv_heads, self.head_dim)
            keys, values = self.cache.keys[i], self.cache.values[i]
            keys[slots, :, positions] = k
            values[slots, :, positions] = v
            if only_decodes:
                attn = attend(q, keys, values, self.scale).reshape(n, q_out)
            else:
                out = torch.empty((n, self.heads, self.head_dim), dtype=x.dtype, device=x.device)
                if attend is not None:
                    out[:decodes] = attend(q[:decodes], keys, values, self.scale)
                for seg in batch.segments[decodes:]:
                    out[seg.start : seg.start + seg.length] = self._prefill_attention(
                        q[seg.start : seg.start + seg.length], keys[seg.slot], values[seg.slot], seg.past
                    )
                attn = out.view(n, q_out)
            o = layer.o(attn)
            if groups:
                self.lora.apply(i, "o_proj", attn, o, groups)
            h = layer.post_norm.add(x, o)
            gate_up = layer.gate_up(h)
            if groups:
                self.lora.apply(i, "gate_proj", h, gate_up[:, : self.intermediate], groups)
                self.lora.apply(i, "up_proj", h, gate_up[:, self.intermediate :], groups)
            act = self.act(gate_up[:, : self.intermediate]).mul_(gate_up[:, self.intermediate :])
            down = layer.down(act)
            if groups:
                self.lora.apply(i, "down_proj", act, down, groups)
        rows = batch.logit_rows
        hidden = self.final_norm.add(x.index_select(0, rows), down.index_select(0, rows))
        return self.lm_head(hidden)

    def _prefill_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, past: int) -> torch.Tensor:
        """Causal attention of a chunk of `len(q)` new tokens over its `past` cached ones and itself."""
        t = q.shape[0]
        k = keys[:, : past + t][None]
        v = values[:, : past + t][None]
        qq = q.transpose(0, 1)[None]
        if past == 0:
            out = F.scaled_dot_product_attention(qq, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
        else:
            keys_at = torch.arange(past + t, device=q.device)
            allowed = keys_at[None, :] <= (past + torch.arange(t, device=q.device))[:, None]
            out = F.scaled_dot_product_attention(qq, k, v, attn_mask=allowed, scale=self.scale, enable_gqa=True)
        return out[0].transpose(0, 1)


class _DecodeAttention:
    """Attention of the single-token rows, together, over the cache slots 0..hi-1 (views, no gather)."""

    def __init__(self, batch: StepBatch, decodes: int, max_len: int) -> None:
        segments = batch.segments[:decodes]
        slots = [s.slot for s in segments]
        self.hi = max(slots) + 1
        lengths = [0] * self.hi
        for s in segments:
            lengths[s.slot] = s.past + 1
        self.width = max(lengths)
        device = batch.device
        within = torch.arange(self.width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        self.mask = within[:, None, None, :]
        self.contiguous = slots == list(range(self.hi))
        self.slots = torch.tensor(slots, device=device)

    def __call__(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
        """`q` [rows, heads, head_dim] -> attention outputs of the same shape. The query heads that share a key
        head attend as that head's query rows (grouped-query attention as one multi-row query per key head), so
        each head's keys and values are read once per step rather than once per query head."""
        rows, heads, dim = q.shape
        kv_heads = keys.shape[1]
        k = keys[: self.hi, :, : self.width]
        v = values[: self.hi, :, : self.width]
        grouped = q.view(rows, kv_heads, heads // kv_heads, dim)  # query head h reads key head h // group
        if not self.contiguous:  # rows for slots that are not decoding this step are zeros and fully masked
            placed = q.new_zeros((self.hi, *grouped.shape[1:]))
            placed[self.slots] = grouped
            grouped = placed
        out = F.scaled_dot_product_attention(grouped, k, v, attn_mask=self.mask, scale=scale).view(-1, heads, dim)
        return out if self.contiguous else out[self.slots]
