"""Export formats: a merged Hugging Face model, or the adapter with its tokenizer.

`merged` folds the LoRA/DoRA weights into the base (`merge_and_unload`) and saves a
standalone model directory with tokenizer, chat template and generation config, loadable
by `from_pretrained` and by vLLM. `adapter` copies the PEFT adapter with its tokenizer, for
servers that load LoRA at runtime (`vllm --lora-modules`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import GenerationConfig

from tunewright.core.errors import UserError
from tunewright.core.modeling import ModelSource, load_adapter_model

FORMATS = ("merged", "adapter")


def export_model(source: ModelSource, fmt: str, out_dir: Path) -> None:
    """Write `source` to `out_dir` in format `fmt`."""
    if source.adapter is None:
        raise UserError(f"{source.label} has no adapter to export; pass a training run")
    if fmt == "adapter":
        shutil.copytree(source.adapter, out_dir, dirs_exist_ok=True)
        return
    if fmt != "merged":
        raise UserError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    model, tokenizer = load_adapter_model(source.base, source.adapter, source.dtype)
    merged = model.merge_and_unload()
    try:
        merged.generation_config = GenerationConfig.from_pretrained(source.base)
    except OSError:
        merged.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
