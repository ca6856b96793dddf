"""Typed configuration of `tunewright train` (the YAML in `configs/sft-lora.yaml`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tunewright.core.config import StrictModel


class ModelConfig(StrictModel):
    name_or_path: str
    max_seq_length: int = Field(1024, gt=8)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    attn_implementation: str | None = None  # e.g. sdpa, eager, flash_attention_2; None: transformers' default


class DataConfig(StrictModel):
    train_path: str = "data/splits/train.jsonl"
    validation_path: str | None = "data/splits/validation.jsonl"
    too_long: Literal["drop", "truncate", "error"] = "drop"
    loss_on: Literal["assistant", "all", "last"] = "assistant"  # chat: which turns are trained
    chat_template: str | None = None  # a Jinja chat template replacing the tokenizer's
    packing: bool = False
    text_key: str = "text"  # pretrain: the document field
    prompt_key: str = "prompt"  # completion: the prompt field (the loss is on the completion)
    completion_key: str = "completion"


class PeftConfig(StrictModel):
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
    padding_free: bool = True  # a micro-batch as one row with per-example attention: same gradient, no padding
    speedups: bool = True  # LoRA layers sharing an input together; last MLP only where trained; CPU RMSNorm kernel
    early_stopping_patience: int | None = Field(None, gt=0)  # evaluations without improvement before stopping
    seed: int = 42
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)


class CheckpointConfig(StrictModel):
    every: int | None = Field(None, gt=0)  # optimiser steps between checkpoints (and one at the end)
    keep_last: int = Field(2, gt=0)


class DistributedConfig(StrictModel):
    strategy: Literal["ddp", "fsdp2"] = "ddp"  # used when launched by torchrun with more than one process
    backend: Literal["auto", "gloo", "nccl"] = "auto"


class LoggingConfig(StrictModel):
    tensorboard: bool = False


class TrainConfig(StrictModel):
    method: Literal["sft", "lora", "dora"] = "lora"  # sft: full fine-tune of every weight
    task: Literal["chat", "completion", "pretrain"] = "chat"
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    peft: PeftConfig = Field(default_factory=PeftConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.task != "chat" and (self.data.loss_on != "assistant" or self.data.chat_template):
            raise ValueError("data.loss_on and data.chat_template apply to task: chat only")
        return self

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree with to be resumed: everything that shapes the run's math."""
        return {
            "method": self.method,
            "task": self.task,
            "model": self.model.model_dump(),
            "data": self.data.model_dump(),
            "peft": self.peft.model_dump() if self.method != "sft" else None,
            "training": self.training.model_dump(by_alias=True, exclude={"eval_every", "early_stopping_patience"}),
        }
