"""SFT: next-token loss on the target tokens, for chat, completion and pre-training data.

Reads the split for the configured task (chat conversations, prompt/completion pairs or
documents) and tokenises it with the right labels (`train/data.py`); packs it when asked.
Each step's summed token loss is divided by the target tokens of the whole step (across
accumulation and processes), so 1 x 8 and 8 x 1, or 1 process and N, give the same
gradient. With `padding_free` (the default) a micro-batch runs as one row of its examples
back to back with per-example attention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.records import RecordError, conversation_from_dict
from tunewright.train.data import (
    Example,
    Skip,
    collate,
    tokenize_completion,
    tokenize_conversation,
    tokenize_document,
)
from tunewright.train.distributed import Dist
from tunewright.train.losses import model_loss
from tunewright.train.objectives import Objective, Split
from tunewright.train.packing import PackedRow, collate_packed, pack

Unit = Example | PackedRow


class Sft(Objective[Unit]):
    """Supervised fine-tuning (and continued pre-training): the mean loss per target token."""

    name = "sft"

    def _examples(self, obj: Any, where: str) -> list[Example]:
        cfg, tokenizer = self.cfg, self.tokenizer
        data, max_len = cfg.data, cfg.model.max_seq_length
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        rid = str(obj.get("id", where))
        if cfg.task == "pretrain":
            if not isinstance(obj.get(data.text_key), str):
                raise DataError(f"{where}: no {data.text_key!r} text (data.text_key)")
            return list(tokenize_document(tokenizer, obj[data.text_key], rid, max_len))
        if cfg.task == "completion":
            prompt, completion = obj.get(data.prompt_key), obj.get(data.completion_key)
            if not isinstance(prompt, str) or not isinstance(completion, str):
                raise DataError(f"{where}: needs string fields {data.prompt_key!r} and {data.completion_key!r}")
            return [tokenize_completion(tokenizer, prompt, completion, rid, max_len, data.too_long)]
        try:
            conv = conversation_from_dict(obj)
        except RecordError as exc:
            raise DataError(f"{where}: {exc}") from None
        return [tokenize_conversation(tokenizer, conv, max_len, data.loss_on, data.too_long)]

    def load_split(self, path: Path) -> Split[Unit]:
        """Tokenise one split; too-long examples are dropped or truncated (counted) or an error."""
        cfg = self.cfg
        split: Split[Unit] = Split(path)
        for i, obj in enumerate(read_jsonl_strict(path), start=1):
            split.counts["read"] += 1
            try:
                found = self._examples(obj, f"{path}:{i}")
            except Skip as skip:
                if skip.reason == "no_targets":
                    raise DataError(
                        f"{path}:{i}: nothing to train on (no target tokens with loss_on: {cfg.data.loss_on})"
                    ) from None
                if cfg.data.too_long == "error":
                    raise DataError(
                        f"{path}:{i}: longer than model.max_seq_length ({cfg.model.max_seq_length})"
                    ) from None
                split.counts["too_long"] += 1
                continue
            split.counts["truncated"] += sum(e.truncated for e in found)
            split.examples.extend(found)
        return split

    def units(self, split: Split[Unit]) -> list[Unit]:
        examples = [e for e in split.examples if isinstance(e, Example)]
        return list(pack(examples, self.cfg.model.max_seq_length)) if self.cfg.data.packing else split.examples

    @property
    def padding_free(self) -> bool:
        return self.cfg.training.padding_free or self.cfg.data.packing

    def _collate(self, units: list[Unit]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        if self.cfg.training.padding_free and units and not isinstance(units[0], PackedRow):
            units = [PackedRow([u for u in units if isinstance(u, Example)])]
        rows = [u for u in units if isinstance(u, PackedRow)]
        batch = collate_packed(rows, pad) if rows else collate([u for u in units if isinstance(u, Example)], pad)
        return {k: v.to(self.d.device) for k, v in batch.items()}

    def tokens(self, units: list[Unit]) -> int:
        return sum(u.length if isinstance(u, PackedRow) else len(u.input_ids) for u in units)

    def counts(self, micro: list[list[Unit]]) -> list[float]:
        return [float(sum(u.targets for units in micro for u in units))]  # labelled next-token positions

    def forward(
        self, model: torch.nn.Module, units: list[Unit], totals: list[float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, _ = model_loss(model, self._collate(units))
        return loss * (self.d.world / max(1.0, totals[0])), {"loss": loss.item()}

    def summarise(self, stats: dict[str, float], totals: list[float]) -> tuple[float, dict[str, float]]:
        return stats["loss"] / max(1.0, totals[0]), {}

    def validate(self, model: torch.nn.Module, examples: list[Unit]) -> dict[str, float]:
        """`val_loss`: the mean loss per target token over `examples`."""
        plain = [e for e in examples if isinstance(e, Example)]
        size = self.cfg.training.micro_batch_size
        return {"val_loss": validation_loss(model, plain, size, self.tokenizer.pad_token_id, self.d)}


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, examples: list[Example], batch_size: int, pad_id: int, d: Dist | None = None
) -> float:
    """Mean loss per target token over `examples` (every rank evaluates all of them)."""
    d = d or Dist()
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(d.device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
        loss, n = model_loss(model, batch)
        total += loss.item()
        count += n
    model.train(was_training)
    return total / max(1, count)
