"""SFT recipe (LoRA / DoRA on chat data), shaped setup -> train -> save.

Reads the curated splits, renders them with the tokenizer's chat template, trains the
adapter with assistant-only loss and writes, inside the run directory: the adapter in PEFT
format (with the tokenizer and chat template beside it) and `metrics.jsonl`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.records import RecordError, conversation_from_dict
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve
from tunewright.train.config import TrainConfig
from tunewright.train.data import Example, tokenize_conversation
from tunewright.train.loop import train_loop
from tunewright.train.peft_adapter import apply_peft


def resolve_model(workspace: Path, name_or_path: str) -> str:
    """A workspace-relative directory if one exists, else the string as given (a hub id)."""
    local = resolve(workspace, name_or_path)
    return str(local) if local.exists() else name_or_path


def load_examples(path: Path, tokenizer: Any, cfg: TrainConfig) -> tuple[list[Example], dict[str, int]]:
    """Tokenise a split; too-long examples are dropped (and counted) or an error."""
    examples, counts = [], {"read": 0, "too_long": 0}
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        counts["read"] += 1
        try:
            conv = conversation_from_dict(obj)
        except RecordError as exc:
            raise DataError(f"{path}:{i}: {exc}") from None
        ex = tokenize_conversation(tokenizer, conv, cfg.model.max_seq_length)
        if ex is None:
            if cfg.data.too_long == "error":
                raise DataError(f"{path}:{i}: example {conv.id} is longer than model.max_seq_length")
            counts["too_long"] += 1
            continue
        examples.append(ex)
    return examples, counts


def run_sft(cfg: TrainConfig, workspace: Path, run: Run) -> dict[str, Any]:
    """Train an adapter as configured and save it under the run directory."""
    torch.manual_seed(cfg.training.seed)
    model_ref = resolve_model(workspace, cfg.model.name_or_path)
    tokenizer = load_tokenizer(model_ref)
    train_path = resolve(workspace, cfg.data.train_path)
    run.add_input(train_path)
    train, train_counts = load_examples(train_path, tokenizer, cfg)
    if not train:
        raise DataError(f"{train_path}: no usable training examples ({train_counts})")
    validation: list[Example] = []
    if cfg.data.validation_path:
        val_path = resolve(workspace, cfg.data.validation_path)
        run.add_input(val_path)
        validation, _ = load_examples(val_path, tokenizer, cfg)
    if Path(model_ref).exists():
        run.add_input(Path(model_ref))

    model = load_model(model_ref, cfg.model.dtype, tokenizer)
    model = apply_peft(model, cfg.peft)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    metrics_path = run.dir / "metrics.jsonl"
    with metrics_path.open("w", encoding="utf-8") as fh:

        def log(row: dict[str, Any]) -> None:
            fh.write(json.dumps(row) + "\n")
            fh.flush()

        summary = train_loop(model, train, validation, cfg.training, tokenizer.pad_token_id, log)

    adapter_dir = run.dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    summary.update(
        train_examples=len(train),
        validation_examples=len(validation),
        dropped_too_long=train_counts["too_long"],
        trainable_parameters=trainable,
        base_model=cfg.model.name_or_path,
    )
    run.results.update(summary)
    return summary
