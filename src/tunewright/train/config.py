"""Typed configuration of `tunewright train` (the YAML in `configs/sft-lora.yaml`).

Each field's docstring is its one-line description in `tunewright config show train`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tunewright.core.config import StrictModel


class ModelConfig(StrictModel):
    name_or_path: str
    """Base model: a directory (relative to the workspace or absolute) or a hub id."""
    max_seq_length: int = Field(1024, gt=8)
    """Longest example in tokens; longer ones follow data.too_long."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype: float32 | bfloat16 | float16 (bf16/fp16 weights also compute in it; adapters stay float32)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, more compute."""
    attn_implementation: str | None = None
    """Attention kernel: sdpa | eager | flash_attention_2 (null: transformers' default)."""
    init_from: str | None = None
    """Start from a training run of this base (e.g. latest:train): its adapter or weights (DPO: also the reference)."""


class DataConfig(StrictModel):
    train_path: str = "data/splits/train.jsonl"
    """Training split (JSONL written by curate)."""
    validation_path: str | None = "data/splits/validation.jsonl"
    """Validation split for the validation loss (null: none)."""
    too_long: Literal["drop", "truncate", "error"] = "drop"
    """What to do with examples over model.max_seq_length: drop | truncate | error (counted in the manifest)."""
    loss_on: Literal["assistant", "all", "last"] = "assistant"
    """Chat: which tokens are trained: assistant (every assistant turn) | last (last turn) | all."""
    chat_template: str | None = None
    """A Jinja chat template replacing the tokenizer's (null: the tokenizer's own)."""
    packing: bool = False
    """Several examples per row; position ids restart and attention never crosses examples."""
    text_key: str = "text"
    """Pretrain: the field holding each document's text."""
    prompt_key: str = "prompt"
    """Completion: the prompt field (context, not trained)."""
    completion_key: str = "completion"
    """Completion: the completion field (trained)."""


class PeftConfig(StrictModel):
    rank: int = Field(16, gt=0)
    """LoRA rank r."""
    alpha: float = Field(32, gt=0)
    """LoRA alpha (the update is scaled by alpha / rank)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the LoRA input."""
    target_modules: str | list[str] = "all-linear"
    """Linear layers to adapt: all-linear or a list of module names, e.g. [q_proj, v_proj]."""


class OptimizerConfig(StrictModel):
    target: str = Field("torch.optim.AdamW", alias="_target_")
    """Optimizer class (a subclass of torch.optim.Optimizer under torch., transformers., peft. or tunewright.)."""
    allow_any_target: bool = False
    """Opt in to an optimizer class outside those prefixes (recorded in the run's manifest)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for the optimizer, e.g. {betas: [0.9, 0.95]}."""

    @model_validator(mode="after")
    def _optimizer_class(self) -> OptimizerConfig:
        import torch

        from tunewright.core.config import resolve_target
        from tunewright.core.errors import ConfigError

        try:
            resolve_target(self.target, "_target_", torch.optim.Optimizer, self.allow_any_target)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class TrainingConfig(StrictModel):
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    max_steps: int = Field(100, gt=0)
    """Optimizer steps to train."""
    micro_batch_size: int = Field(4, gt=0)
    """Examples per micro-batch, per process."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    """Micro-batches per optimizer step (global batch = micro batch x accumulation x processes)."""
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    """Share of max_steps with a linear learning-rate warmup."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup: cosine | linear | constant."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay."""
    max_grad_norm: float | None = 1.0
    """Clip the gradient norm to this (null: no clipping)."""
    eval_every: int = Field(50, gt=0)
    """Optimizer steps between validation-loss evaluations."""
    padding_free: bool = True
    """A micro-batch as one row with per-example attention: same gradient, no compute on padding."""
    mixed_precision: Literal["none", "bfloat16"] = "none"
    """bfloat16: compute under bf16 autocast while weights and optimizer state stay float32 (model.dtype: float32)."""
    speedups: bool = True
    """Exact-math speed-ups: fused LoRA groups, last MLP only where trained, CPU RMSNorm kernel."""
    early_stopping_patience: int | None = Field(None, gt=0)
    """Stop after this many evaluations without a better validation loss (null: never)."""
    seed: int = 42
    """Seed for initialisation, data order and dropout."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The optimizer."""


class CheckpointConfig(StrictModel):
    every: int | None = Field(None, gt=0)
    """Optimizer steps between checkpoints in checkpoints/<run>/step-N (and one at the end; null: none)."""
    keep_last: int = Field(2, gt=0)
    """Checkpoints kept per run (older ones are deleted)."""


class DistributedConfig(StrictModel):
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    """Under torchrun with more than one process: ddp | fsdp2 (shards every decoder layer)."""
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    """Process-group backend: auto (nccl on GPUs, gloo on CPUs) | gloo | nccl."""


class LoggingConfig(StrictModel):
    tensorboard: bool = False
    """Also write TensorBoard events to runs/<id>/tensorboard (pip install 'tunewright[tensorboard]')."""


class DpoConfig(StrictModel):
    beta: float = Field(0.1, gt=0)
    """How far the policy may move from the reference (the KL strength)."""
    loss: Literal["sigmoid", "ipo", "robust", "hinge"] = "sigmoid"
    """sigmoid (DPO) | ipo | robust (noisy labels, with label_smoothing) | hinge (SLiC)."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """Assumed share of flipped preference labels (sigmoid: conservative DPO; robust)."""
    rpo_alpha: float | None = Field(None, ge=0)
    """Weight of an added NLL (SFT) term on the chosen answers, per token (null: none)."""
    precompute_ref_logps: bool = False
    """Score every pair with the reference once before training, then free it (cached by data and model)."""
    reference_copy: bool = False
    """Full fine-tune: keep a frozen copy of the starting model as the live reference (memory x2)."""


OLD_METHODS = {"sft": "none", "lora": "lora", "dora": "dora"}


class TrainConfig(StrictModel):
    objective: Literal["sft", "dpo"] = "sft"
    """What is optimised: sft (next-token loss on the targets) | dpo (preference pairs)."""
    adapter: Literal["none", "lora", "dora"] = "lora"
    """Which weights train: none (every weight, a full fine-tune) | lora | dora."""
    task: Literal["chat", "completion", "pretrain"] = "chat"
    """chat (conversations) | completion ({prompt, completion}) | pretrain ({text} documents)."""
    model: ModelConfig
    """The base model."""
    data: DataConfig = Field(default_factory=DataConfig)
    """The training data and how it becomes tokens."""
    peft: PeftConfig = Field(default_factory=PeftConfig)
    """The adapter (adapter: lora or dora)."""
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    """Preference optimisation (objective: dpo)."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """Optimisation."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpoints for --resume."""
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """Multi-process training under torchrun."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Extra metric sinks."""

    @model_validator(mode="before")
    @classmethod
    def _old_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and "method" in data:
            old = data["method"]
            adapter = OLD_METHODS.get(old, "lora")
            raise ValueError(
                f"method: {old} was split into what is optimised and which weights train; "
                f"write `objective: sft` and `adapter: {adapter}` instead"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.training.mixed_precision != "none" and self.model.dtype != "float32":
            raise ValueError(
                f"training.mixed_precision: {self.training.mixed_precision} keeps float32 master weights and needs "
                f"model.dtype: float32 (model.dtype: {self.model.dtype} already computes in {self.model.dtype})"
            )
        if self.task != "chat" and (self.data.loss_on != "assistant" or self.data.chat_template):
            raise ValueError("data.loss_on and data.chat_template apply to task: chat only")
        if self.objective == "dpo":
            if self.task != "chat":
                raise ValueError("objective: dpo trains on chat preference pairs; use task: chat")
            if self.data.packing:
                raise ValueError("data.packing applies to objective: sft (a pair is already one padding-free row)")
            if self.adapter == "none" and not (self.dpo.precompute_ref_logps or self.dpo.reference_copy):
                raise ValueError(
                    "objective: dpo with adapter: none needs a reference: dpo.precompute_ref_logps: true "
                    "(scored once, no copy) or dpo.reference_copy: true (a frozen copy in memory)"
                )
        return self

    def compute_dtype(self) -> str:
        """The dtype the forward and backward compute in: mixed precision's, else the weights'."""
        return self.model.dtype if self.training.mixed_precision == "none" else self.training.mixed_precision

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree with to be resumed: everything that shapes the run's math."""
        return {
            "objective": self.objective,
            "adapter": self.adapter,
            "task": self.task,
            "model": self.model.model_dump(),
            "data": self.data.model_dump(),
            "peft": self.peft.model_dump() if self.adapter != "none" else None,
            "dpo": self.dpo.model_dump() if self.objective == "dpo" else None,
            "training": self.training.model_dump(by_alias=True, exclude={"eval_every", "early_stopping_patience"}),
        }
