"""Export formats: a merged Hugging Face model, or the adapter with its tokenizer.

`merged` folds the LoRA/DoRA weights into the base (`merge_and_unload`), or takes a full
fine-tune as it is, and saves a standalone model directory that loads the same everywhere:
safetensors (sharded above `max_shard_size`), the tokenizer, the chat template both as
`chat_template.jinja` and inside `tokenizer_config.json` (older loaders read only the
latter), and a `generation_config.json` whose `eos_token_id` lists every token the chat
template ends an assistant turn with, so `generate`, vLLM and llama.cpp stop where the
template does. A quantized base is refused: merging into rounded weights is lossy.

`adapter` copies the PEFT adapter with its tokenizer, for servers that load LoRA at
runtime (`vllm --lora-modules`, NIM's PEFT directory); `vllm_warnings` says what vLLM
would refuse or need flags for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import load_adapter_model, load_tokenizer

FORMATS = ("merged", "adapter", "gguf")
VLLM_MAX_LORA_RANK = 16  # vLLM's default --max-lora-rank
VLLM_LORA_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def _generation_config(source: ModelSource, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    try:
        config = GenerationConfig.from_pretrained(source.tuned_from or source.base)
    except OSError:
        config = GenerationConfig()
    ids = chat.end_of_turn_ids(tokenizer, config)
    config.eos_token_id = ids[0] if len(ids) == 1 else ids
    config.pad_token_id = tokenizer.pad_token_id
    return config


def _template_in_tokenizer_config(out_dir: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """The export's chat template (tool-aware: `chat.portable_template`) in both places loaders read it."""
    path = out_dir / "tokenizer_config.json"
    template = chat.portable_template(tokenizer)
    if not template or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = template
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "chat_template.jinja").write_text(template, encoding="utf-8")


def vllm_warnings(adapter_dir: Path) -> list[str]:
    """Why vLLM would refuse this PEFT adapter, or what it needs to load it."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    warnings = []
    if cfg.get("modules_to_save"):
        warnings.append(f"modules_to_save {cfg['modules_to_save']}: vLLM's LoRA does not load them")
    rank = max([int(cfg.get("r") or 0), *map(int, (cfg.get("rank_pattern") or {}).values())])
    if rank > VLLM_MAX_LORA_RANK:
        warnings.append(
            f"rank {rank} is above vLLM's default --max-lora-rank {VLLM_MAX_LORA_RANK}: serve with it raised"
        )
    targets = cfg.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else targets
    odd = sorted(set(targets) - VLLM_LORA_MODULES)
    if odd:
        warnings.append(f"target modules {odd} are outside the attention and MLP projections vLLM's LoRA supports")
    if cfg.get("use_dora"):
        warnings.append("DoRA: vLLM serves LoRA only; export --format merged instead")
    return warnings


def merged_model(source: ModelSource) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The trained model as one set of weights: the adapter folded into the base, or the full fine-tune."""
    base_config = Path(source.base) / "config.json"
    if base_config.is_file() and json.loads(base_config.read_text(encoding="utf-8")).get("quantization_config"):
        raise UserError(
            f"the base {source.base} is quantized; merging an adapter into rounded weights is lossy. "
            "Export --format adapter, or train on the unquantized base"
        )
    if source.adapter is not None:
        model, tokenizer = load_adapter_model(source.base, source.adapter, source.dtype)
        return model.merge_and_unload(), tokenizer
    return source.load()


def export_model(source: ModelSource, fmt: str, out_dir: Path, max_shard_size: str = "5GB") -> list[str]:
    """Write `source` (a training run: adapter or full fine-tune) to `out_dir` as `merged` or `adapter`;
    returns warnings for the user."""
    if fmt == "adapter":
        if source.adapter is None:
            raise UserError(f"{source.label} is a full fine-tune with no adapter; export it with --format merged")
        shutil.copytree(source.adapter, out_dir, dirs_exist_ok=True)
        if (out_dir / "tokenizer_config.json").is_file():
            _template_in_tokenizer_config(out_dir, load_tokenizer(out_dir, require_chat_template=False))
        return vllm_warnings(out_dir)
    model, tokenizer = merged_model(source)
    model.generation_config = _generation_config(source, tokenizer)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out_dir)
    _template_in_tokenizer_config(out_dir, tokenizer)
    return []
