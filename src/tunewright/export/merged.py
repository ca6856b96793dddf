"""Export formats: a merged Hugging Face model, or the adapter with its tokenizer.

`merged` folds the LoRA/DoRA weights into the base (`merge_and_unload`), or takes a full
fine-tune as it is, and saves a standalone model directory with tokenizer, chat template and generation config, loadable
by `from_pretrained` and by vLLM. `adapter` copies the PEFT adapter with its tokenizer, for
servers that load LoRA at runtime (`vllm --lora-modules`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import GenerationConfig

from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_adapter_model

FORMATS = ("merged", "adapter")


def export_model(source: ModelSource, fmt: str, out_dir: Path) -> None:
    """Write `source` (a training run: adapter or full fine-tune) to `out_dir` in format `fmt`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "adapter":
        if source.adapter is None:
            raise UserError(f"{source.label} is a full fine-tune with no adapter; export it with --format merged")
        shutil.copytree(source.adapter, out_dir, dirs_exist_ok=True)
        return
    if source.adapter is not None:
        model, tokenizer = load_adapter_model(source.base, source.adapter, source.dtype)
        model = model.merge_and_unload()
    else:
        model, tokenizer = source.load()
    try:
        model.generation_config = GenerationConfig.from_pretrained(source.tuned_from or source.base)
    except OSError:
        model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
