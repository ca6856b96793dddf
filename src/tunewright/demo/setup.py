"""Prepare the embedded default in a workspace: sample raw data and the tiny base model."""

from __future__ import annotations

from pathlib import Path

import torch

from tunewright.core.io import read_jsonl_strict
from tunewright.core.runs import start_run
from tunewright.demo import domain, tiny_model
from tunewright.demo.sample_data import write_sample_data

BASE_MODEL_DIR = "models/tiny-base"


def build_base_model(out_dir: Path, handbook: list[str], seed: int = 0, steps: int = 150) -> list[float]:
    """Train the tokenizer, build and pre-train the tiny Llama, save it in `out_dir`; returns the losses."""
    torch.manual_seed(seed)
    cases = domain.all_cases()
    texts = handbook + [p for _, _, p in cases] + [domain.answer(i, t) for i, t, _ in cases]
    tokenizer = tiny_model.build_tokenizer(texts)
    model = tiny_model.build_model(tokenizer, seed=seed)
    losses = tiny_model.pretrain(model, tokenizer, handbook * 3, steps=steps, seed=seed)
    tiny_model.save_base(model, tokenizer, out_dir)
    return losses


def prepare_sample(workspace: Path, seed: int = 0, steps: int = 150) -> Path:
    """Write the sample data and build the base model (recorded as a `base` run)."""
    raw = write_sample_data(workspace / "data" / "raw")
    out_dir = workspace / BASE_MODEL_DIR
    handbook = [row["text"] for row in read_jsonl_strict(raw["handbook"])]
    config = {"seed": seed, "pretrain_steps": steps, "corpus": "data/raw/handbook.jsonl"}
    with start_run(workspace, "base", ["tunewright", "init", "--sample"], config, seed) as run:
        run.add_input(raw["handbook"])
        losses = build_base_model(run.output_dir(out_dir), handbook, seed=seed, steps=steps)
        run.results.update(first_loss=round(losses[0], 4), final_loss=round(losses[-1], 4))
    return out_dir
