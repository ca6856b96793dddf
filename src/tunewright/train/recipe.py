"""The training recipe: data -> model (full, LoRA or DoRA) -> loop -> outputs, for every task.

Reads the splits for the configured task (chat conversations, prompt/completion pairs or
documents), tokenises them with the right labels, optionally packs them, trains, and
writes inside the run directory: the adapter in PEFT format (`adapter/`, loadable by
`PeftModel.from_pretrained` and vLLM's `--lora-modules`) or the full model (`model/`),
each with the tokenizer and chat template beside it; `metrics.jsonl`; `loss-curve.svg`;
TensorBoard events when enabled. Only rank 0 writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.core.adapter_files import adapter_summary, make_portable
from tunewright.core.errors import DataError, UserError
from tunewright.core.io import read_jsonl_strict, sha256_file
from tunewright.core.model_location import locate_model
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.progress import status
from tunewright.core.records import RecordError, conversation_from_dict
from tunewright.core.runs import Run
from tunewright.core.workspace import resolve
from tunewright.train.config import TrainConfig
from tunewright.train.data import Example, Skip, tokenize_completion, tokenize_conversation, tokenize_document
from tunewright.train.distributed import Dist, full_state_dict, unwrap, wrap
from tunewright.train.dpo import DpoTrainer, PairExample, dpo_reference, load_pairs, start_of
from tunewright.train.loop import Trainer
from tunewright.train.packing import pack
from tunewright.train.peft_adapter import apply_peft
from tunewright.train.plot import write_loss_curve


@dataclass
class Split:
    path: Path
    examples: list[Example] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"read": 0, "too_long": 0, "truncated": 0})


def _examples(obj: Any, where: str, tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig) -> list[Example]:
    data, max_len = cfg.data, cfg.model.max_seq_length
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    rid = str(obj.get("id", where))
    if cfg.task == "pretrain":
        if not isinstance(obj.get(data.text_key), str):
            raise DataError(f"{where}: no {data.text_key!r} text (data.text_key)")
        return list(tokenize_document(tokenizer, obj[data.text_key], rid, max_len))
    if cfg.task == "completion":
        prompt, completion = obj.get(data.prompt_key), obj.get(data.completion_key)
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise DataError(f"{where}: needs string fields {data.prompt_key!r} and {data.completion_key!r}")
        return [tokenize_completion(tokenizer, prompt, completion, rid, max_len, data.too_long)]
    try:
        conv = conversation_from_dict(obj)
    except RecordError as exc:
        raise DataError(f"{where}: {exc}") from None
    return [tokenize_conversation(tokenizer, conv, max_len, data.loss_on, data.too_long)]


def load_split(path: Path, tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig) -> Split:
    """Tokenise one split; too-long examples are dropped or truncated (counted) or an error."""
    if cfg.objective == "dpo":
        pairs, counts = load_pairs(path, tokenizer, cfg.model.max_seq_length, cfg.data.too_long)
        return Split(path, pairs, counts)  # type: ignore[arg-type]
    split = Split(path)
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        split.counts["read"] += 1
        try:
            found = _examples(obj, f"{path}:{i}", tokenizer, cfg)
        except Skip as skip:
            if skip.reason == "no_targets":
                raise DataError(
                    f"{path}:{i}: nothing to train on (no target tokens with loss_on: {cfg.data.loss_on})"
                ) from None
            if cfg.data.too_long == "error":
                raise DataError(f"{path}:{i}: longer than model.max_seq_length ({cfg.model.max_seq_length})") from None
            split.counts["too_long"] += 1
            continue
        split.counts["truncated"] += sum(e.truncated for e in found)
        split.examples.extend(found)
    return split


def prepare_tokenizer(cfg: TrainConfig, model_ref: str) -> PreTrainedTokenizerBase:
    tokenizer = load_tokenizer(model_ref, require_chat_template=cfg.task == "chat" and not cfg.data.chat_template)
    if cfg.data.chat_template:
        tokenizer.chat_template = cfg.data.chat_template
    return tokenizer


def render_check(split: Split, tokenizer: PreTrainedTokenizerBase, n: int = 3) -> str:
    """A few tokenised examples with the trained tokens inside ⟦ ⟧, and the split's counts."""
    examples = [e for u in split.examples for e in ((u.chosen, u.rejected) if isinstance(u, PairExample) else (u,))]
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
    model_ref = locate_model(workspace, cfg.model.name_or_path, "model.name_or_path")
    tokenizer = prepare_tokenizer(cfg, model_ref)
    train = load_split(resolve(workspace, cfg.data.train_path), tokenizer, cfg)
    if not train.examples:
        raise DataError(f"{train.path}: no usable training examples ({train.counts})")
    validation = None
    if cfg.data.validation_path:
        validation = load_split(resolve(workspace, cfg.data.validation_path), tokenizer, cfg)
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
    reference = None
    if cfg.objective == "dpo":
        reference = dpo_reference(cfg, workspace, built, start, [train, validation], d)
        if run is not None:
            run.results["reference"] = reference.describe()
    model = wrap(built, d, cfg.distributed.strategy)
    units = pack(train.examples, cfg.model.max_seq_length) if cfg.data.packing else train.examples
    logger = Logger(run.dir, cfg.logging.tensorboard) if run is not None else None
    trainer = (DpoTrainer if reference is not None else Trainer)(
        model,
        cfg,
        units,
        validation.examples if validation else [],
        tokenizer.pad_token_id,
        d,
        log=logger or (lambda row: None),
        checkpoint_root=workspace / "checkpoints" / run_id,
    )
    if reference is not None:
        reference.model = model
        trainer.reference = reference
    if resume is not None:
        trainer.resume(resume)
        for row in trainer.state.metrics if logger is not None else []:
            logger(row)
    try:
        summary = trainer.run()
    finally:
        if logger is not None:
            logger.close()
    if reference is not None:
        reference.release()
    state = full_state_dict(model) if d.active and cfg.distributed.strategy == "fsdp2" else None
    if run is None:
        return summary
    write_loss_curve(run.dir / "loss-curve.svg", trainer.state.metrics)
    target = run.dir / ("model" if cfg.adapter == "none" else "adapter")
    with status(f"saving the {target.name}"):
        unwrap(model).save_pretrained(target, state_dict=state)
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
