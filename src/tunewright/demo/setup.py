"""Prepare the embedded default in a workspace: sample raw data and the tiny base model."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from tunewright.core import tools as tool_format
from tunewright.core.io import read_jsonl_strict
from tunewright.core.runs import start_run
from tunewright.demo import domain, tiny_model
from tunewright.demo.sample_data import TOOL_SYSTEM_PROMPT, write_sample_data

BASE_MODEL_DIR = "models/tiny-base"


def build_base_model(out_dir: Path, handbook: list[str], seed: int = 0, steps: int = 150) -> list[float]:
    """Train the tokenizer, build and pre-train the tiny Llama, save it in `out_dir`; returns the losses.

    The model is pre-trained on the handbook, then its token embeddings alone are trained on every domain text
    (prompts, answers, tool calls, alerts) with its words shuffled: each token the assistant will read or write
    gets a trained vector, but no answer format is learned. With tied embeddings a token never seen in
    pre-training keeps its random initial vector, and a LoRA (which leaves embeddings alone) can then rank it
    first but hardly make it likely."""
    torch.manual_seed(seed)
    cases = domain.all_cases()
    domain_texts = [p for _, _, p in cases] + [domain.answer(i, t) for i, t, _ in cases] + structured_texts()
    tokenizer = tiny_model.build_tokenizer(handbook + domain_texts)
    model = tiny_model.build_model(tokenizer, seed=seed)
    losses = tiny_model.pretrain(model, tokenizer, handbook * 3, steps=steps, seed=seed)
    rng = random.Random(seed)
    shuffled = [" ".join(rng.sample(words, len(words))) for words in (t.split() for t in dict.fromkeys(domain_texts))]
    rng.shuffle(shuffled)
    documents = [" ".join(shuffled[i : i + 8]) for i in range(0, len(shuffled), 8)]
    tiny_model.warm_embeddings(model, tokenizer, documents, steps=max(1, steps // 3), seed=seed)
    tiny_model.save_base(model, tokenizer, out_dir)
    return losses


def structured_texts() -> list[str]:
    """The tool-use and extraction text the assistant will read and write, for the tokenizer (not pre-trained on:
    the base model knows neither format)."""
    tools = domain.freshness_cases() + domain.incident_cases()
    listing = tool_format.written([{"role": "system", "content": TOOL_SYSTEM_PROMPT}], domain.TOOLS)[0]["content"]
    texts = [listing] * len(tools) + [p for _, p, _ in tools]
    texts += [tool_format.call_text("check_freshness", a) for _, _, a in domain.freshness_cases()]
    texts += [tool_format.call_text("open_incident", a) for _, _, a in domain.incident_cases()]
    texts += [p for _, _, p in domain.no_call_cases()]
    alerts = domain.extraction_cases()
    return texts + [p for _, _, p in alerts] + [domain.extraction(i, t) for i, t, _ in alerts]


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
