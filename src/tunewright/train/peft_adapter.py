"""Wrapping a model with a PEFT adapter (LoRA or DoRA), checking target modules first."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from tunewright.core.errors import UserError
from tunewright.train.config import PeftConfig


def linear_module_names(model: PreTrainedModel) -> set[str]:
    """Leaf names of the Linear layers (what `target_modules` may name)."""
    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def apply_peft(model: PreTrainedModel, cfg: PeftConfig, dora: bool = False) -> PreTrainedModel:
    """Wrap `model` with a LoRA or DoRA adapter; unknown target modules are a UserError."""
    from peft import LoraConfig, get_peft_model

    if isinstance(cfg.target_modules, list):
        known = linear_module_names(model)
        unknown = sorted(set(cfg.target_modules) - known)
        if unknown:
            raise UserError(
                f"peft.target_modules: {', '.join(unknown)} not found in the model; "
                f"linear modules are: {', '.join(sorted(known))}"
            )
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        use_dora=dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)
