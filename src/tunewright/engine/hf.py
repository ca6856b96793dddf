"""The generic runner: any causal LM through its own forward, one request at a time per step.

For what `LlamaRunner` cannot run (other architectures, DoRA or other non-LoRA adapters).
Each request keeps a transformers `DynamicCache`; adapters are peft adapters on the model,
switched per request. The engine still batches at the request level (admission, queueing,
streaming); only the compute is per request, so it is slower, never wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from tunewright.engine.batch import StepBatch
from tunewright.engine.kv_cache import Slots
from tunewright.engine.lora import AdapterTable


class PeftAdapters(AdapterTable):
    """Adapters loaded with peft on the runner's model, under the same names and indices as `LoraSet`."""

    def __init__(self, runner: HFRunner) -> None:
        super().__init__()
        self.runner = runner
        self.names: dict[int, str] = {}

    @property
    def weights(self) -> dict[int, str]:
        return self.names

    def add(self, name: str, path: Path, in_use: set[int] | frozenset[int] = frozenset()) -> int:
        from peft import PeftModel

        index = self._claim(name, in_use)
        key = f"a{index}"
        model = self.runner.model
        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=key)
        else:
            self.runner.model = PeftModel.from_pretrained(model, str(path), adapter_name=key).eval()
        self.index[name], self.names[index] = index, key
        return index

    def _free(self, index: int) -> None:
        self.runner.model.delete_adapter(self.names.pop(index))


class HFRunner:
    def __init__(self, model: PreTrainedModel, slots: int, max_len: int) -> None:
        self.model: Any = model.eval()
        self.device = next(model.parameters()).device
        self.cache = Slots(slots, max_len)
        self.lora = PeftAdapters(self)
        self.past: dict[int, DynamicCache] = {}

    def release(self, slot: int) -> None:
        self.past.pop(slot, None)
        self.cache.release(slot)

    @torch.inference_mode()
    def forward(self, batch: StepBatch) -> torch.Tensor:
        """Each segment through the model with its request's cache; logits of `batch.logit_rows`, model dtype."""
        wanted = batch.logit_rows.tolist()
        out = []
        for seg in batch.segments:
            rows = [r - seg.start for r in wanted if seg.start <= r < seg.start + seg.length]
            cache = self.past.setdefault(seg.slot, DynamicCache())
            ids = batch.input_ids[seg.start : seg.start + seg.length][None]
            positions = batch.positions[seg.start : seg.start + seg.length][None]
            logits = self._run(seg.adapter, ids, positions, cache)
            out += [logits[0, r] for r in rows]
        return torch.stack(out) if out else torch.empty(0)

    def _run(self, adapter: int, ids: torch.Tensor, positions: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        model = self.model
        if not self.lora.names:
            return model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True).logits
        if adapter == 0:
            with model.disable_adapter():
                return model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True).logits
        model.set_adapter(self.lora.names[adapter])
        return model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True).logits
