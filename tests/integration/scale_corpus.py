"""A raw corpus with everything curation must handle, for the sharded-curation tests.

Planted: exact duplicates (also across sources), near duplicates (a word changed), personal
data, copies of eval prompts, French and German records, junk lines (malformed JSON, empty
lines, a non-object), records carrying their own ids with repeats, tool calls, and a phrase
of an eval prompt so common in the corpus that decontamination must ignore it.
"""

import json
import random
from pathlib import Path

TOPICS = ["rivers", "volcanoes", "tea", "bridges", "owls", "glaciers", "printing", "bees", "tides", "maps"]
FRENCH = "Le chat dort sur le canapé pendant que la pluie tombe doucement sur la ville ce soir."
GERMAN = "Der Hund läuft schnell über die grüne Wiese und bellt laut, weil er den Ball sieht."
EVAL_PROMPTS = [
    "Explain in plain words why the sky looks blue on a clear afternoon near the sea.",
    "Describe how a lighthouse keeper kept the lamp burning through a long winter storm.",
]
COMMON = "Please answer briefly and clearly in a few plain sentences for a curious reader."  # eval and many records


def _answer(rng: random.Random, topic: str, i: int) -> str:
    words = [rng.choice(["quiet", "steady", "bright", "old", "careful", "long", "small"]) for _ in range(12)]
    return f"Fact {i} about {topic}: " + " ".join(words) + f". It matters because {topic} shape daily life."


def write_corpus(root: Path, n: int = 600, seed: int = 7) -> dict[str, str]:
    """Write `raw/a.jsonl`, `raw/b.jsonl` and `eval/prompts.jsonl` under `root`; returns relative paths."""
    rng = random.Random(seed)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "eval").mkdir(parents=True, exist_ok=True)
    a: list[str] = []
    records = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rec = {"prompt": f"Tell me something about {topic}, number {i}.", "response": _answer(rng, topic, i)}
        if i % 37 == 0:
            rec["response"] += f" Write to person{i}@example.com or call 555-010-{i % 10000:04d}."
        if i % 53 == 0:
            rec["id"] = "shared-id"
        if i % 41 == 0:
            rec["prompt"] = EVAL_PROMPTS[i % 2]
        if i % 13 == 0:
            rec["prompt"] = f"{COMMON} {rec['prompt']}"
        if i % 29 == 0:
            rec["response"] = FRENCH if i % 2 else GERMAN
        records.append(rec)
        a.append(json.dumps(rec))
        if i % 17 == 0:
            a.append(json.dumps(rec))  # exact duplicate
        if i % 23 == 0:
            near = dict(rec, response=rec["response"].replace("Fact", "A fact", 1))
            a.append(json.dumps(near))  # near duplicate
        if i % 61 == 0:
            a.append('{"prompt": "broken", "response": ')
        if i % 67 == 0:
            a.append("")
        if i % 71 == 0:
            a.append("[1, 2, 3]")
    (root / "raw" / "a.jsonl").write_text("\n".join(a) + "\n", encoding="utf-8")
    b = []
    for i in range(n // 4):
        if i % 5 == 0:
            b.append(json.dumps(records[i * 3]))  # a duplicate from the other source
            continue
        tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        call = {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": f"C{i}"})}}
        messages = [
            {"role": "user", "content": f"What is the weather in city C{i} today, please?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": json.dumps({"temp": i % 30})},
            {"role": "assistant", "content": f"It is {i % 30} degrees in C{i} today, with a light wind."},
        ]
        b.append(json.dumps({"id": "shared-id" if i % 9 == 0 else f"b{i}", "messages": messages, "tools": [tool]}))
    (root / "raw" / "b.jsonl").write_text("\n".join(b) + "\n", encoding="utf-8")
    evals = [json.dumps({"prompt": p, "response": "An answer."}) for p in [*EVAL_PROMPTS, COMMON]]
    (root / "eval" / "prompts.jsonl").write_text("\n".join(evals) + "\n", encoding="utf-8")
    return {"a": "raw/a.jsonl", "b": "raw/b.jsonl", "eval": "eval/prompts.jsonl"}


def curate_config(paths: dict[str, str], **extra: object) -> dict:
    """A curate config over the corpus with exact and fuzzy dedup, PII, language and decontamination on."""
    return {
        "sources": [
            {"name": "a", "path": paths["a"], "license": "MIT"},
            {"name": "b", "path": paths["b"], "license": "MIT"},
        ],
        "fuzzy_dedup": {"enabled": True, "preset": "recall", "jaccard_threshold": 0.7},
        "decontaminate": {"eval_sets": [paths["eval"]], "ngram": 8, "max_matches": 10},
        "quality": {"thresholds": {"word_count": {"min": 3}}},
        "split": {"validation": 0.1, "test": 0.1, "seed": 3},
        **extra,
    }
