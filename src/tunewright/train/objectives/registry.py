"""The objectives by the name `objective:` takes in the training config."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from tunewright.train.config import TrainConfig
from tunewright.train.distributed import Dist
from tunewright.train.objectives import Objective
from tunewright.train.objectives.dpo import Dpo
from tunewright.train.objectives.sft import Sft

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (Sft, Dpo)}


def objective_for(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase, d: Dist | None = None) -> Objective:
    """The configured objective, for this run's tokenizer and processes."""
    return OBJECTIVES[cfg.objective](cfg, tokenizer, d)
