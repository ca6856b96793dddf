"""DPO: preference pairs, sequence log-probabilities, the reference, and the preference loss.

A pair's chosen and rejected answers are each rendered after the prompt with the chat
template; only the answer's tokens (and the end-of-turn token) are scored, exactly the
tokens SFT would train. A micro-batch of pairs runs as one padding-free row (chosen 1,
rejected 1, chosen 2, ...) with per-example attention, so the chosen and the rejected
answers share one forward and no compute goes to padding; the LM head runs only where an
answer token is predicted. Per-token log-probabilities are summed per answer.

The reference costs no second model where it can be avoided:
- an adapter (LoRA, DoRA) trained from the base: the reference pass disables the adapter
  (`disable_adapter()`; the fused LoRA groups honour it, see `fused_lora.py`);
- a policy started from an SFT run's adapter (`model.init_from`): that adapter is loaded a
  second time, frozen, and the reference pass switches to it;
- `dpo.precompute_ref_logps`: every pair is scored once before training (cached under
  `cache/ref-logps/` by data, model and tokenisation), and nothing is kept for the reference;
- a full fine-tune needs `precompute_ref_logps` or, when asked, `reference_copy`: a frozen
  copy in memory.

The per-pair losses are summed and divided by the pairs of the whole optimiser step (across
accumulation and processes); the optional NLL term on the chosen answers (`rpo_alpha`) is
divided by their tokens, as TRL's RPO does.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase

from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict, sha256_file, write_json
from tunewright.core.progress import progress_bar
from tunewright.core.records import Conversation, PreferencePair, RecordError, to_preference_pair
from tunewright.train.autocast import autocast_for
from tunewright.train.config import TrainConfig
from tunewright.train.data import IGNORE, Example, Skip, tokenize_conversation
from tunewright.train.distributed import Dist, unwrap
from tunewright.train.dpo_loss import PairLogps, PreferenceOutput, preference_losses
from tunewright.train.init_from import Start
from tunewright.train.objectives import Objective, Split
from tunewright.train.trained_positions import positions_in_use
from tunewright.train.varlen import varlen_attention


@dataclass
class PairExample:
    chosen: Example
    rejected: Example
    id: str
    ref: tuple[float, float] | None = None  # the reference's summed log-probs (chosen, rejected), precomputed

    @property
    def length(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)

    @property
    def truncated(self) -> bool:
        return self.chosen.truncated or self.rejected.truncated


def tokenize_pair(
    tokenizer: PreTrainedTokenizerBase, pair: PreferencePair, max_length: int, too_long: str = "drop"
) -> PairExample:
    """The chosen and the rejected answer after the prompt, labelled on the answer only; `Skip` as for SFT."""
    if not any(m.role == "user" for m in pair.prompt):
        raise Skip("no_prompt")
    sides = []
    for side in (pair.chosen, pair.rejected):
        conv = Conversation([*pair.prompt, *side], pair.id, pair.source)
        sides.append(
            tokenize_conversation(tokenizer, conv, max_length, "assistant", too_long, loss_from=len(pair.prompt))
        )
    return PairExample(sides[0], sides[1], pair.id)


def read_pair(obj: Any, where: str) -> PreferencePair:
    """A PreferencePair from a curated split line; a conversation without pairs is named for what it is."""
    if isinstance(obj, dict) and "messages" in obj and "chosen" not in obj:
        raise DataError(
            f"{where}: a conversation, not a preference pair: objective: dpo trains on pairs "
            "({prompt, chosen, rejected}, curated from a source with kind: preference)"
        )
    try:
        pair = to_preference_pair(obj, where, where)
    except RecordError as exc:
        raise DataError(f"{where}: {exc}") from None
    if [m.content for m in pair.chosen] == [m.content for m in pair.rejected]:
        raise DataError(f"{where}: chosen and rejected are the same answer; nothing to prefer")
    return pair


def collate_pairs(pairs: list[PairExample]) -> dict[str, torch.Tensor]:
    """One padding-free row: chosen 1, rejected 1, chosen 2, ...; `segments` numbers each token's answer."""
    examples = [e for p in pairs for e in (p.chosen, p.rejected)]
    ids, labels, positions, segments = [], [], [], []
    for k, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids += ex.input_ids
        labels += [IGNORE, *ex.labels[1:]]
        positions += range(n)
        segments += [k] * n
    as_row = {"input_ids": ids, "labels": labels, "position_ids": positions}
    batch = {k: torch.tensor([v], dtype=torch.long) for k, v in as_row.items()}
    batch["segments"] = torch.tensor(segments, dtype=torch.long)
    return batch


def sequence_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], answers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each answer's labelled tokens, and how many tokens each has."""
    next_labels = batch["labels"][:, 1:]
    keep = (next_labels != IGNORE).any(0).nonzero().squeeze(1)
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    with positions_in_use(keep):
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    targets = next_labels[0, keep]
    token_logps = -F.cross_entropy(logits[0].float(), targets, reduction="none")
    seg = batch["segments"][keep + 1]
    sums = torch.zeros(answers, dtype=token_logps.dtype, device=token_logps.device).index_add(0, seg, token_logps)
    counts = torch.bincount(seg, minlength=answers).to(token_logps.dtype)
    return sums, counts


def _pair_logps(sums: torch.Tensor, counts: torch.Tensor) -> PairLogps:
    return PairLogps(sums[0::2], sums[1::2], counts[0::2], counts[1::2])


@contextlib.contextmanager
def active_adapter(model: torch.nn.Module, name: str) -> Iterator[None]:
    """Run the PEFT layers with adapter `name` inside the block, without touching what trains."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    before = [layer._active_adapter for layer in layers]
    for layer in layers:
        layer._active_adapter = [name]
    try:
        yield
    finally:
        for layer, previous in zip(layers, before, strict=True):
            layer._active_adapter = previous


class Reference:
    """The reference model's log-probabilities for a batch, however the run provides them."""

    def __init__(self, model: torch.nn.Module, kind: str, copy_of: torch.nn.Module | None = None) -> None:
        self.model, self.kind, self.copy = model, kind, copy_of
        self.precomputed: str | None = None  # "computed" or "cache" once every pair carries its reference log-probs
        self.precompute_seconds: float | None = None

    def describe(self) -> dict[str, Any]:
        """For the run's manifest: what the reference was, whether it was scored ahead and in how long."""
        return {"kind": self.kind, "precomputed": self.precomputed, "precompute_seconds": self.precompute_seconds}

    def release(self) -> None:
        """Drop what the reference held: the frozen copy, or the second adapter (so it is not saved)."""
        self.copy = None
        if self.kind == "reference_adapter":
            unwrap(self.model).delete_adapter("reference")

    @classmethod
    def frozen_copy(cls, model: torch.nn.Module) -> Reference:
        ref = copy.deepcopy(unwrap(model)).eval()
        ref.requires_grad_(False)
        return cls(model, "copy", ref)

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor], answers: int) -> tuple[torch.Tensor, torch.Tensor]:
        model = unwrap(self.model)
        if self.kind == "copy":
            return sequence_logps(self.copy, batch, answers)
        was_training = model.training
        model.eval()
        try:
            if self.kind == "disabled":
                with model.disable_adapter():
                    return sequence_logps(model, batch, answers)
            if self.kind == "reference_adapter":
                with active_adapter(model, "reference"):
                    return sequence_logps(model, batch, answers)
            return sequence_logps(model, batch, answers)  # "initial": the policy before any update
        finally:
            model.train(was_training)


def ref_cache_key(parts: dict[str, Any]) -> str:
    """A content key for precomputed reference log-probs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def precompute_reference(
    reference: Reference, pairs: list[PairExample], batch_pairs: int, cache: Path | None, device: torch.device
) -> str:
    """Fill every pair's `ref` (from `cache` when it holds them); returns where they came from."""
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text(encoding="utf-8"))
        if len(stored) == len(pairs):
            for pair, (c, r) in zip(pairs, stored, strict=True):
                pair.ref = (c, r)
            return "cache"
    with varlen_attention(unwrap(reference.model)), progress_bar("reference log-probs", total=len(pairs)) as advance:
        for i in range(0, len(pairs), batch_pairs):
            chunk = pairs[i : i + batch_pairs]
            batch = {k: v.to(device) for k, v in collate_pairs(chunk).items()}
            sums, _ = reference(batch, 2 * len(chunk))
            for k, pair in enumerate(chunk):
                pair.ref = (float(sums[2 * k]), float(sums[2 * k + 1]))
            advance(len(chunk))
    if cache is not None:
        write_json(cache, [list(p.ref) for p in pairs if p.ref is not None])
    return "computed"


class Dpo(Objective[PairExample]):
    """Direct preference optimisation (and IPO, robust, hinge; optional RPO term); pairs are the units."""

    name = "dpo"
    reference: Reference | None = None

    def load_split(self, path: Path) -> Split[PairExample]:
        pairs, counts = load_pairs(path, self.tokenizer, self.cfg.model.max_seq_length, self.cfg.data.too_long)
        return Split(path, pairs, counts)

    @property
    def padding_free(self) -> bool:
        return True  # every micro-batch is one padding-free row

    def prepare(
        self, workspace: Path, model: torch.nn.Module, start: Start, splits: list[Split[PairExample]]
    ) -> dict[str, Any]:
        self.reference = dpo_reference(self.cfg, workspace, model, start, splits, self.d)
        return self.reference.describe()

    def attach(self, model: torch.nn.Module) -> None:
        if self.reference is not None:
            self.reference.model = model

    def release(self) -> None:
        if self.reference is not None:
            self.reference.release()

    def shown(self, unit: PairExample) -> list[Example]:
        return [unit.chosen, unit.rejected]

    def tokens(self, units: list[PairExample]) -> int:
        return sum(p.length for p in units)

    def counts(self, micro: list[list[PairExample]]) -> list[float]:
        """Pairs, and chosen-answer tokens (the RPO term's normaliser)."""
        return [float(sum(len(u) for u in micro)), float(sum(p.chosen.targets for u in micro for p in u))]

    def _pairs_forward(self, model: torch.nn.Module, pairs: list[PairExample]) -> tuple[PreferenceOutput, PairLogps]:
        """The policy's log-probs of each pair, the reference's, and the per-pair losses."""
        batch = {k: v.to(self.d.device) for k, v in collate_pairs(pairs).items()}
        policy = _pair_logps(*sequence_logps(model, batch, 2 * len(pairs)))
        if all(p.ref is not None for p in pairs):
            ref = torch.tensor([p.ref for p in pairs], device=self.d.device, dtype=policy.chosen.dtype)
            reference = PairLogps(ref[:, 0], ref[:, 1], policy.chosen_tokens, policy.rejected_tokens)
        else:
            if self.reference is None:
                raise RuntimeError("objective: dpo has no reference: prepare() was not called")
            reference = _pair_logps(*self.reference(batch, 2 * len(pairs)))
        d = self.cfg.dpo
        return preference_losses(policy, reference, d.beta, d.loss, d.label_smoothing), policy

    @staticmethod
    def _stats(out: PreferenceOutput, policy: PairLogps) -> dict[str, float]:
        return {
            "loss": float(out.losses.detach().sum()),
            "chosen": float(out.chosen_rewards.sum()),
            "rejected": float(out.rejected_rewards.sum()),
            "correct": float((out.chosen_rewards > out.rejected_rewards).sum()),
            "logps_c": float(policy.chosen.detach().sum()),
            "logps_r": float(policy.rejected.detach().sum()),
        }

    def forward(
        self, model: torch.nn.Module, units: list[PairExample], totals: list[float]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        pairs, chosen_tokens = totals
        out, policy = self._pairs_forward(model, units)
        loss = out.losses.sum() / max(1.0, pairs)
        nll = -policy.chosen.sum()
        if self.cfg.dpo.rpo_alpha:
            loss = loss + self.cfg.dpo.rpo_alpha * nll / max(1.0, chosen_tokens)
        return loss * self.d.world, {**self._stats(out, policy), "nll": float(nll.detach())}

    def summarise(self, stats: dict[str, float], totals: list[float]) -> tuple[float, dict[str, float]]:
        n = max(1.0, totals[0])
        loss = stats["loss"] / n + (self.cfg.dpo.rpo_alpha or 0.0) * stats["nll"] / max(1.0, totals[1])
        return loss, _metrics(stats, n)

    @torch.no_grad()
    def validate(self, model: torch.nn.Module, examples: list[PairExample]) -> dict[str, float]:
        was_training = model.training
        model.eval()
        totals = dict.fromkeys(("loss", "chosen", "rejected", "correct", "logps_c", "logps_r"), 0.0)
        size = self.cfg.training.micro_batch_size
        for i in range(0, len(examples), size):
            for key, value in self._stats(*self._pairs_forward(model, examples[i : i + size])).items():
                totals[key] += value
        model.train(was_training)
        n = max(1, len(examples))
        return {"val_loss": totals["loss"] / n, **{f"val_{k}": v for k, v in _metrics(totals, n).items()}}


def _metrics(totals: dict[str, float], pairs: float) -> dict[str, float]:
    return {
        "rewards_chosen": totals["chosen"] / pairs,
        "rewards_rejected": totals["rejected"] / pairs,
        "reward_margin": (totals["chosen"] - totals["rejected"]) / pairs,
        "reward_accuracy": totals["correct"] / pairs,
        "logps_chosen": totals["logps_c"] / pairs,
        "logps_rejected": totals["logps_r"] / pairs,
    }


def load_pairs(
    path: Path, tokenizer: PreTrainedTokenizerBase, max_length: int, too_long: str
) -> tuple[list[PairExample], dict[str, int]]:
    """Tokenised pairs of a curated preference split, with counts (read, too long, truncated)."""
    pairs, counts = [], {"read": 0, "too_long": 0, "truncated": 0}
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        counts["read"] += 1
        where = f"{path}:{i}"
        pair = read_pair(obj, where)
        try:
            example = tokenize_pair(tokenizer, pair, max_length, too_long)
        except Skip as skip:
            if skip.reason == "no_prompt":
                raise DataError(f"{where}: the pair has no user turn in its prompt") from None
            if skip.reason == "no_targets":
                raise DataError(f"{where}: an answer with nothing to score") from None
            if too_long == "error":
                raise DataError(f"{where}: longer than model.max_seq_length ({max_length})") from None
            counts["too_long"] += 1
            continue
        counts["truncated"] += int(example.truncated)
        pairs.append(example)
    return pairs, counts


def data_key(paths: list[Path]) -> list[str]:
    """Content hashes of the files a cache entry depends on."""
    return [sha256_file(p) for p in paths]


def dpo_reference(
    cfg: TrainConfig, workspace: Path, model: torch.nn.Module, start: Start, splits: list[Split[PairExample]], d: Dist
) -> Reference:
    """The run's reference (see the module docstring); with `precompute_ref_logps` every pair is scored now."""
    from tunewright.core.io import sha256_tree

    if not cfg.dpo.precompute_ref_logps:
        if cfg.adapter == "none":
            return Reference.frozen_copy(model)
        if start.adapter is not None:
            unwrap(model).load_adapter(str(start.adapter), adapter_name="reference", is_trainable=False)
            return Reference(model, "reference_adapter")
        return Reference(model, "disabled")
    kind = "disabled" if cfg.adapter != "none" and start.adapter is None else "initial"
    reference = Reference(model, kind)
    used = list(splits)
    pairs = [p for s in used for p in s.examples]

    def tree(path: str | Path | None) -> str | None:
        return sha256_tree(Path(path)) if path is not None and Path(path).is_dir() else (str(path) if path else None)

    key = ref_cache_key(
        {
            "data": data_key([s.path for s in used]),
            "model": tree(start.model_ref),
            "adapter": tree(start.adapter),
            "kind": kind,
            "dtype": cfg.model.dtype,
            "compute_dtype": cfg.compute_dtype(),
            "max_seq_length": cfg.model.max_seq_length,
            "too_long": cfg.data.too_long,
            "chat_template": cfg.data.chat_template,
        }
    )
    cache = workspace / "cache" / "ref-logps" / f"{key}.json"
    started = time.perf_counter()
    with autocast_for(d.device, cfg.compute_dtype()):
        reference.precomputed = precompute_reference(
            reference, pairs, cfg.training.micro_batch_size, cache if d.main else None, d.device
        )
    reference.precompute_seconds = round(time.perf_counter() - started, 2)
    return reference
