"""LoRA adapters applied per row of a batch, several adapters in one forward pass (Punica / S-LoRA style).

The base weights are never changed: each adapted projection adds `(x A^T) B^T * scale` for
the rows whose request chose that adapter, gathered by adapter, so requests for different
adapters (and the base) share one decode batch instead of a merge / unmerge per request.
Adapters are read from PEFT's files (`adapter_config.json`, `adapter_model.safetensors`);
plain LoRA on the attention and MLP projections is supported, and anything else (DoRA,
trained embeddings or biases, `modules_to_save`) is refused with the reason, so the caller
can fall back to peft's own forward.
"""

from __future__ import annotations

import abc
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])\.weight$")
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Rows = torch.Tensor | slice | None  # the rows of a batch one adapter applies to


def adapter_name_for(label: str) -> str:
    """A valid adapter name for a model reference (`exports/x`, `latest:train`) used as an engine's default."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._")[:128]
    return name if ADAPTER_NAME.match(name) else "adapter"


class UnsupportedAdapter(ValueError):
    """An adapter this module cannot apply as a low-rank delta (the reason says why)."""


@dataclass
class LoraWeights:
    a: torch.Tensor  # [r, in]
    b: torch.Tensor  # [out, r], scale folded in


def _pattern_value(patterns: dict[str, float], module: str, default: float) -> float:
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def read_adapter(
    path: Path, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> dict[tuple[int, str], LoraWeights]:
    """(layer, projection) -> LoRA weights of a PEFT adapter directory, in `dtype` on `device`."""
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise UnsupportedAdapter(f"{config.get('peft_type')} adapters are not LoRA")
    if config.get("use_dora"):
        raise UnsupportedAdapter("DoRA needs the weight norm of the merged weight")
    if config.get("modules_to_save") or config.get("bias", "none") != "none":
        raise UnsupportedAdapter("the adapter trains whole modules or biases, not only low-rank deltas")
    if config.get("fan_in_fan_out"):
        raise UnsupportedAdapter("fan_in_fan_out layouts are for Conv1D models")
    tensors = load_file(str(path / "adapter_model.safetensors"))
    parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        m = _KEY.search(key)
        if m is None or m.group(2) not in PROJECTIONS:
            raise UnsupportedAdapter(f"weight {key} is not a LoRA factor of an attention or MLP projection")
        parts.setdefault((int(m.group(1)), m.group(2)), {})[m.group(3)] = tensor
    r, alpha = config["r"], config["lora_alpha"]
    out = {}
    for (layer, proj), ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise UnsupportedAdapter(f"layer {layer} {proj} lacks lora_A or lora_B")
        module = f"model.layers.{layer}.{proj}"
        rank = _pattern_value(config.get("rank_pattern") or {}, module, r)
        scale_alpha = _pattern_value(config.get("alpha_pattern") or {}, module, alpha)
        scale = scale_alpha / math.sqrt(rank) if config.get("use_rslora") else scale_alpha / rank
        a, b = ab["A"].to(dtype).contiguous(), (ab["B"] * scale).to(dtype).contiguous()
        out[(layer, proj)] = LoraWeights(a.to(device), b.to(device))
    return out


class AdapterTable(abc.ABC):
    """Adapter names -> indices (0 is the base), with removal deferred until no running request uses one."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.retired: set[int] = set()  # unloaded, kept until no request uses them
        self._next = 1

    def _claim(self, name: str, in_use: set[int] | frozenset[int]) -> int:
        """A fresh index for `name` (an adapter of that name is unloaded first)."""
        if not ADAPTER_NAME.match(name):
            raise ValueError(f"adapter name {name!r}: letters, digits, '.', '_' and '-' only")
        self.remove(name, in_use)
        index = self._next
        self._next += 1
        return index

    def remove(self, name: str, in_use: set[int] | frozenset[int] = frozenset()) -> bool:
        """Unload `name`: new requests cannot use it; its weights go once no request in `in_use` does."""
        index = self.index.pop(name, None)
        if index is None:
            return False
        self.retired.add(index)
        self.collect(in_use)
        return True

    def collect(self, in_use: set[int] | frozenset[int]) -> None:
        """Free the weights of unloaded adapters that no request uses any more."""
        for index in [i for i in self.retired if i not in in_use]:
            self._free(index)
            self.retired.discard(index)

    @abc.abstractmethod
    def _free(self, index: int) -> None:
        """Release the weights held for `index`."""


class LoraSet(AdapterTable):
    """The adapters loaded on one base; index 0 is the base itself (no delta)."""

    def __init__(
        self, shapes: dict[str, tuple[int, int]], layers: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        super().__init__()
        self.shapes, self.layers = shapes, layers  # projection -> (in, out)
        self.dtype, self.device = dtype, device
        self.weights: dict[int, dict[tuple[int, str], LoraWeights]] = {}

    def add(self, name: str, path: Path, in_use: set[int] | frozenset[int] = frozenset()) -> int:
        """Load the adapter at `path` under `name` (replacing one of that name); returns its index."""
        if not ADAPTER_NAME.match(name):
            raise ValueError(f"adapter name {name!r}: letters, digits, '.', '_' and '-' only")
        weights = read_adapter(path, self.dtype, self.device)
        for (layer, proj), w in weights.items():
            fan_in, fan_out = self.shapes[proj]
            if layer >= self.layers or w.a.shape[1] != fan_in or w.b.shape[0] != fan_out:
                raise UnsupportedAdapter(f"{path}: layer {layer} {proj} does not fit this base model")
        index = self._claim(name, in_use)
        self.index[name], self.weights[index] = index, weights
        return index

    def _free(self, index: int) -> None:
        self.weights.pop(index, None)

    def groups(self, adapter_ids: torch.Tensor) -> list[tuple[int, Rows]]:
        """(adapter, rows) for every adapter used in a batch: rows None means every row, a slice a run of
        consecutive rows (one request's, typically), else their indices."""
        used = [int(a) for a in torch.unique(adapter_ids).tolist() if a != 0]
        if len(used) == 1 and bool((adapter_ids == used[0]).all()):
            return [(used[0], None)]
        out: list[tuple[int, Rows]] = []
        for a in used:
            rows = (adapter_ids == a).nonzero().squeeze(1)
            first, last = int(rows[0]), int(rows[-1])
            out.append((a, slice(first, last + 1) if last - first + 1 == rows.numel() else rows))
        return out

    def apply(self, layer: int, proj: str, x: torch.Tensor, out: torch.Tensor, groups: list[tuple[int, Rows]]) -> None:
        """Add each group's low-rank delta of projection `proj` to `out` (in place). Consecutive rows are updated
        through views, without the gather and scatter (a mixed batch pays two small matmuls per projection)."""
        for adapter, rows in groups:
            w = self.weights.get(adapter, {}).get((layer, proj))
            if w is None:
                continue
            if rows is None:
                out.addmm_(x @ w.a.T, w.b.T)
            elif isinstance(rows, slice):
                out[rows].addmm_(x[rows] @ w.a.T, w.b.T)
            else:
                out.index_add_(0, rows, (x.index_select(0, rows) @ w.a.T) @ w.b.T)
