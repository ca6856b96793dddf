"""The training recipe: data -> model (full, LoRA or DoRA) -> loop -> outputs, for every task.

The configured objective (`objectives/`: SFT on chat conversations, prompt/completion pairs or
documents; DPO on preference pairs) reads and tokenises the splits and prepares what it needs
(DPO's reference); the loop trains; then this writes inside the run directory: the adapter
in PEFT format (`adapter/`, loadable by `PeftModel.from_pretrained` and vLLM's
`--lora-modules`) or the full model (`model/`),
each with the tokenizer and chat template beside it; `metrics.jsonl`; `loss-curve.svg`;
TensorBoard events when enabled. Only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.core.adapter_files import adapter_summary, make_portable
from tunewright.core.errors import DataError, UserError
from tunewright.core.io import sha256_file
from tunewright.core.model_location import locate_model
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.precision import slow_dtype_warning
from tunewright.core.progress import status
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve
from tunewright.train.config import TrainConfig
from tunewright.train.distributed import Dist, full_state_dict, unwrap, wrap
from tunewright.train.init_from import start_of
from tunewright.train.loop import Trainer
from tunewright.train.objectives import Split
from tunewright.train.objectives.registry import objective_for
from tunewright.train.peft_adapter import apply_peft
from tunewright.train.plot import write_loss_curve

log = logging.getLogger(__name__)


def load_split(path: Path, tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig) -> Split:
    """Tokenise one split file as the configured objective reads it."""
    return objective_for(cfg, tokenizer).load_split(path)


def prepare_tokenizer(cfg: TrainConfig, model_ref: str) -> PreTrainedTokenizerBase:
    tokenizer = load_tokenizer(model_ref, require_chat_template=cfg.task == "chat" and not cfg.data.chat_template)
    if cfg.data.chat_template:
        tokenizer.chat_template = cfg.data.chat_template
    return tokenizer


def render_check(split: Split, tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig, n: int = 3) -> str:
    """A few tokenised examples with the trained tokens inside ⟦ ⟧, and the split's counts."""
    objective = objective_for(cfg, tokenizer)
    examples = [e for u in split.examples for e in objective.shown(u)]
    lines = [
        f"{split.path}: {split.counts['read']} records -> {len(split.examples)} examples "
        f"({split.counts['too_long']} too long, {split.counts['truncated']} truncated); "
        f"{sum(len(e.input_ids) for e in examples)} tokens, {sum(e.targets for e in examples)} trained",
        "Trained tokens are shown inside ⟦ ⟧; everything else is context (label -100)"
        + ("; each pair as its chosen, then its rejected answer." if len(examples) > len(split.examples) else "."),
    ]
    for ex in examples[: n * (len(examples) // max(1, len(split.examples)))]:
        parts, run, trained = [], [], False
        for tok, lab in zip(ex.input_ids, ex.labels, strict=True):
            if (lab != -100) != trained and run:
                text = tokenizer.decode(run)
                parts.append(f"⟦{text}⟧" if trained else text)
                run = []
            trained = lab != -100
            run.append(tok)
        if run:
            text = tokenizer.decode(run)
            parts.append(f"⟦{text}⟧" if trained else text)
        lines += ["", f"--- {ex.id} ({len(ex.input_ids)} tokens, {ex.targets} trained)", "".join(parts)]
    return "\n".join(lines)


def build_model(
    cfg: TrainConfig, model_ref: str, tokenizer: PreTrainedTokenizerBase, d: Dist, adapter: Path | None = None
) -> torch.nn.Module:
    """The model to train: every weight, a new adapter, or (`adapter`) an earlier run's adapter continued."""
    with status(f"loading {cfg.model.name_or_path}", enabled=d.main):
        model = load_model(model_ref, cfg.model.dtype, tokenizer, attn_implementation=cfg.model.attn_implementation)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.adapter == "none":
        model.requires_grad_(True)
    else:
        if cfg.model.gradient_checkpointing:
            model.enable_input_require_grads()
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        else:
            model = apply_peft(model, cfg.peft, dora=cfg.adapter == "dora")
    return model.to(d.device)


def adapter_readme(adapter_dir: Path, cfg: TrainConfig, run_id: str) -> str:
    """What a training run's adapter is and how to load it (instead of PEFT's empty template)."""
    base = cfg.model.name_or_path
    return (
        f"# Adapter of training run {run_id}\n\n"
        f"{adapter_summary(adapter_dir)}, trained by tunewright ({cfg.task}, {cfg.training.max_steps} steps) "
        f"on top of `{base}`; the run's `manifest.json` records the data, config and versions.\n\n"
        f'Load it with `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), '
        f'"runs/{run_id}/adapter")`, or export it with `tunewright export {run_id}`.\n'
    )


class Logger:
    """metrics.jsonl (and TensorBoard) writer for rank 0."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.fh = (run_dir / "metrics.jsonl").open("w", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("logging.tensorboard needs: pip install 'tunewright[tensorboard]'") from None
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def __call__(self, row: dict[str, Any]) -> None:
        self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, row["step"])

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def run_training(
    cfg: TrainConfig,
    workspace: Path,
    run: Run | None,
    run_id: str,
    d: Dist,
    resume: Path | None = None,
) -> dict[str, Any]:
    """Train as configured; `run` is None on ranks other than 0 (they write nothing)."""
    torch.manual_seed(cfg.training.seed)
    slow = slow_dtype_warning(cfg.compute_dtype(), str(d.device))
    if slow and d.main:
        log.warning("training in %s", slow)
    model_ref = locate_model(workspace, cfg.model.name_or_path, "model.name_or_path")
    tokenizer = prepare_tokenizer(cfg, model_ref)
    objective = objective_for(cfg, tokenizer, d)
    train = objective.load_split(resolve(workspace, cfg.data.train_path))
    if not train.examples:
        raise DataError(f"{train.path}: no usable training examples ({train.counts})")
    validation = None
    if cfg.data.validation_path:
        validation = objective.load_split(resolve(workspace, cfg.data.validation_path))
    if run is not None:
        for split in (train, validation):
            if split is not None:
                run.add_input(split.path)
        if Path(model_ref).exists():
            run.add_input(Path(model_ref))
        if cfg.training.optimizer.allow_any_target:
            run.results["opted_in_target"] = cfg.training.optimizer.target
    start = start_of(workspace, cfg, model_ref)
    if run is not None and start.adapter is not None:
        run.add_input(start.adapter)
    built = build_model(cfg, start.model_ref, tokenizer, d, start.adapter)
    prepared = objective.prepare(workspace, built, start, [s for s in (train, validation) if s is not None])
    if run is not None and prepared is not None:
        run.results["reference"] = prepared
    model = wrap(built, d, cfg.distributed.strategy)
    objective.attach(model)
    units = objective.units(train)
    logger = Logger(run.dir, cfg.logging.tensorboard) if run is not None else None
    trainer = Trainer(
        model,
        cfg,
        objective,
        units,
        validation.examples if validation else [],
        d,
        log=logger or (lambda row: None),
        checkpoint_root=workspace / "checkpoints" / run_id,
    )
    if resume is not None:
        trainer.resume(resume)
        for row in trainer.state.metrics if logger is not None else []:
            logger(row)
    try:
        summary = trainer.run()
    finally:
        if logger is not None:
            logger.close()
    objective.release()
    state = full_state_dict(model) if d.active and cfg.distributed.strategy == "fsdp2" else None
    if run is None:
        return summary
    write_loss_curve(run.dir / "loss-curve.svg", trainer.state.metrics)
    target = run.dir / ("model" if cfg.adapter == "none" else "adapter")
    with status(f"saving the {target.name}"):
        # the vocabulary is never resized, so the base's embeddings are not copied into an adapter; "auto"
        # would fetch the base's config to check, from the hub when its recorded path is workspace-relative
        extra = {"save_embedding_layers": False} if cfg.adapter != "none" else {}
        unwrap(model).save_pretrained(target, state_dict=state, **extra)
        tokenizer.save_pretrained(target)
    if cfg.adapter != "none":
        make_portable(target, cfg.model.name_or_path, adapter_readme(target, cfg, run.run_id))
    summary.update(
        objective=cfg.objective,
        adapter=cfg.adapter,
        task=cfg.task,
        train_examples=len(train.examples),
        validation_examples=len(validation.examples) if validation else 0,
        packed_rows=len(units) if cfg.data.packing else None,
        dropped_too_long=train.counts["too_long"],
        truncated=train.counts["truncated"],
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        base_model=cfg.model.name_or_path,
        resumed_from=str(resume) if resume else None,
        init_from=start.run_id,
        data_sha256={s.path.name: sha256_file(s.path) for s in (train, validation) if s is not None},
    )
    run.results.update(summary)
    return summary
