"""Loading models and tokenizers, and chat generation, shared by every stage that runs a model.

Loading goes through `AutoModelForCausalLM` / `AutoTokenizer`, so a hub id or a local
directory works the same; a training run's adapter is loaded on top of its base with
`PeftModel`. A tokenizer without a pad token, or whose pad token is its EOS, gets a
distinct pad token: padding with EOS would mask the EOS out of the labels and the model
would never learn to stop. Generation is one function so that eval, the export parity
check and the server produce answers the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core.errors import UserError


def quiet_transformers() -> None:
    """Our own progress bars cover loading and saving; keep the libraries' bars and advisories out."""
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


quiet_transformers()

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PAD_TOKEN = "<|pad|>"


def load_tokenizer(name_or_path: str | Path, require_chat_template: bool = True) -> PreTrainedTokenizerBase:
    """Load a tokenizer with a pad token distinct from EOS (and, by default, a chat template)."""
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer from {name_or_path}: {exc}") from None
    if require_chat_template and tok.chat_template is None:
        raise UserError(f"tokenizer at {name_or_path} has no chat template; chat models need one")
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    return tok


def load_model(
    name_or_path: str | Path,
    dtype: str = "float32",
    tokenizer: PreTrainedTokenizerBase | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM; grows the embeddings if the tokenizer gained a pad token."""
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES[dtype], **extra)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from {name_or_path}: {exc}") from None
    if tokenizer is not None:
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_adapter_model(
    base: str | Path, adapter_dir: Path, dtype: str = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Base model with a PEFT adapter on top, and the tokenizer saved beside the adapter."""
    from peft import PeftModel

    tokenizer = load_tokenizer(adapter_dir)
    model = load_model(base, dtype, tokenizer)
    return PeftModel.from_pretrained(model, str(adapter_dir)).eval(), tokenizer


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS produced) or "length"


def _stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


@torch.no_grad()
def generate_chat(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> list[Generation]:
    """Answer each conversation (a list of role/content dicts); greedy when temperature is 0."""
    tokenizer.padding_side = "left"
    stop = _stop_ids(model, tokenizer)
    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            torch.manual_seed(seed)
    out: list[Generation] = []
    for i in range(0, len(conversations), batch_size):
        chunk = conversations[i : i + batch_size]
        prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(model.device)
        seqs = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        width = enc["input_ids"].shape[1]
        for row, mask in zip(seqs, enc["attention_mask"], strict=True):
            new = row[width:].tolist()
            ended = next((k for k, t in enumerate(new) if t in stop), None)
            body = new if ended is None else new[:ended]
            out.append(
                Generation(
                    text=tokenizer.decode(body, skip_special_tokens=True),
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=len(body) + (0 if ended is None else 1),
                    finish_reason="length" if ended is None else "stop",
                )
            )
    return out


@dataclass
class ModelSource:
    """Where a model to run comes from: a base (path or hub id), optionally with an adapter."""

    label: str
    base: str
    adapter: Path | None = None
    run_id: str | None = None
    dtype: str = "float32"
    tuned_from: str | None = None  # a fully fine-tuned model's base (what `base` means for it)

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Load the model ready for inference."""
        if self.adapter is not None:
            return load_adapter_model(self.base, self.adapter, self.dtype)
        tokenizer = load_tokenizer(self.base)
        return load_model(self.base, self.dtype, tokenizer).eval(), tokenizer

    def files(self) -> list[Path]:
        """Local files this model is made of (manifest inputs)."""
        paths = [Path(self.base)] if Path(self.base).exists() else []
        return paths + ([self.adapter] if self.adapter is not None else [])


def resolve_model(workspace: Path, ref: str, base_of: ModelSource | None = None) -> ModelSource:
    """Turn a model reference into a `ModelSource`.

    `ref` is `base` (the base model of `base_of`), a training run (id, path or
    `latest:train`), a model directory (an export), or a hub id.
    """
    from tunewright.core.runs import find_run, load_manifest

    if ref == "base":
        if base_of is None:
            raise UserError("'base' names the base model of another model; use it with --baseline")
        return ModelSource("base", base_of.tuned_from or base_of.base, dtype=base_of.dtype)
    local = Path(ref) if Path(ref).is_absolute() else workspace / ref
    if (local / "config.json").is_file():
        return ModelSource(ref, str(local))
    if (local / "adapter_config.json").is_file():
        raise UserError(f"{ref} is an adapter directory; pass the training run that made it")
    try:
        run_dir = find_run(workspace, ref)
    except UserError:
        if ref.startswith(("latest", "runs/", "/", ".")) or local.exists():
            raise
        return ModelSource(ref, ref)
    manifest = load_manifest(run_dir)
    model_cfg = manifest["config"]["model"]
    base = Path(model_cfg["name_or_path"])
    base_ref = str(workspace / base) if (workspace / base).exists() else model_cfg["name_or_path"]
    rid, dtype = manifest["run_id"], model_cfg["dtype"]
    if (run_dir / "model" / "config.json").is_file():
        return ModelSource(rid, str(run_dir / "model"), None, rid, dtype, tuned_from=base_ref)
    if not (run_dir / "adapter").is_dir():
        raise UserError(f"run {rid} ({manifest['stage']}) has no adapter or model to evaluate")
    return ModelSource(rid, base_ref, run_dir / "adapter", rid, dtype)
