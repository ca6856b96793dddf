"""Loading models and tokenizers, and chat generation, shared by every stage that runs a model.

Loading goes through `AutoModelForCausalLM` / `AutoTokenizer`, so a hub id or a local
directory works the same; a training run's adapter is loaded on top of its base with
`PeftModel`. The vocabulary is never changed: a tokenizer without a pad token pads with
a token it already has (its EOS), because every padded position is masked out of
attention and labels by position, so pad == EOS costs nothing, while adding a token
would resize the embeddings and make adapters unloadable on the real base model.
Generation lives in `tunewright.engine`, one path for eval, export parity and the server.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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


def load_tokenizer(name_or_path: str | Path, require_chat_template: bool = True) -> PreTrainedTokenizerBase:
    """Load a tokenizer (by default one with a chat template); one without a pad token pads with its EOS."""
    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer from {name_or_path}: {exc}") from None
    if require_chat_template and tok.chat_template is None:
        raise UserError(f"tokenizer at {name_or_path} has no chat template; chat models need one")
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise UserError(f"tokenizer at {name_or_path} has neither a pad nor an EOS token to pad with")
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | Path,
    dtype: str = "float32",
    tokenizer: PreTrainedTokenizerBase | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM as it is; a tokenizer with ids beyond its embeddings is an error, never a resize."""
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES[dtype], **extra)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from {name_or_path}: {exc}") from None
    if tokenizer is not None:
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            raise UserError(
                f"the tokenizer has {len(tokenizer)} tokens but the model at {name_or_path} embeds only {rows}; "
                "use the tokenizer that belongs to this model"
            )
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
