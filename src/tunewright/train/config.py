"""Typed configuration of `tunewright train` (the YAML in `configs/sft-lora.yaml`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tunewright.core.config import StrictModel


class ModelConfig(StrictModel):
    name_or_path: str
    max_seq_length: int = Field(1024, gt=8)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class DataConfig(StrictModel):
    train_path: str = "data/splits/train.jsonl"
    validation_path: str | None = "data/splits/validation.jsonl"
    too_long: Literal["drop", "error"] = "drop"


class PeftConfig(StrictModel):
    method: Literal["lora", "dora"] = "lora"
    rank: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class OptimizerConfig(StrictModel):
    target: str = Field("torch.optim.AdamW", alias="_target_")
    allow_any_target: bool = False
    kwargs: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(StrictModel):
    learning_rate: float = Field(2e-4, gt=0)
    max_steps: int = Field(100, gt=0)
    micro_batch_size: int = Field(4, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = 1.0
    eval_every: int = Field(50, gt=0)
    seed: int = 42
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


class TrainConfig(StrictModel):
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    peft: PeftConfig = Field(default_factory=PeftConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
