"""LLM-as-judge: a rubric score (1-5) per answer, or pairwise model-vs-baseline with positions swapped.

The judge is any OpenAI-compatible endpoint. Its verdict is read from the reply text
(`Score: 4` anywhere or a leading `4`; a leading `A`, `B` or `tie`); when the text holds none, the first token's top
log-probs are read instead and the score is the probability-weighted mean of the
candidate verdicts among them (G-Eval's scoring), so a judge that answers with a bare
digit is read exactly. A reply that yields no verdict either way is junk: it is counted
(metric `judge_valid_rate`) and the item is left out of the judge's mean, never guessed.
Pairwise judging asks twice with A and B swapped and averages, which cancels a judge's
preference for a position. With `constrain`, the request carries `structured_outputs.choice`
(vLLM's field, which tunewright's server implements) so the judge can only answer with a
verdict. Verdicts are cached on disk by the hash of (endpoint, judge
model, rubric, mode, prompt, answers), so re-running an eval does not pay for them twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from tunewright.core.io import write_json
from tunewright.evaluate.config import EndpointConfig, JudgeScorer
from tunewright.evaluate.items import Item
from tunewright.evaluate.stats import Metric, mean_metric
from tunewright.runtimes.openai_client import OpenAIClient

_SCORE = re.compile(r"\bscore\b\W{0,3}(?:is\W{0,3})?([1-5])\b", re.I)
_LEADING_SCORE = re.compile(r"^\W*([1-5])(?:\s*/\s*5)?\b")
_PAIR = re.compile(r"^\W*(?:answer\s+)?(A|B|[Tt]ie)\b(?!\s+(?!(?:is|wins|was|because)\b)[a-z])")

SCORES = ["1", "2", "3", "4", "5"]
SIDES = ["A", "B", "tie"]
SCORE_SYSTEM = (
    "You are a strict evaluator. Criteria: {rubric}\n"
    "Reply with 'Score: N' where N is an integer from 1 to 5, then at most one sentence of reason."
)
PAIR_SYSTEM = (
    "You are a strict evaluator comparing two answers to the same request. Criteria: {rubric}\n"
    "Reply with exactly 'A' if answer A is better, 'B' if answer B is better, or 'tie'."
)


def _user_text(item: Item, answers: dict[str, str]) -> str:
    parts = [f"Request:\n{item.question}"]
    if item.reference is not None:
        parts.append(f"Reference answer:\n{item.reference}")
    parts += [f"{name}:\n{text}" for name, text in answers.items()]
    return "\n\n".join(parts)


def parse_score(text: str, top: list[dict[str, Any]] | None = None) -> float | None:
    """A 1-5 score from the judge's reply, else from its first token's top log-probs; None if neither."""
    found = _SCORE.search(text or "") or _LEADING_SCORE.search(text or "")
    if found:
        return float(found.group(1))
    return _weighted(top, {str(k): float(k) for k in range(1, 6)})


def parse_preference(text: str, top: list[dict[str, Any]] | None = None) -> float | None:
    """1.0 when A wins, 0.0 when B wins, 0.5 for a tie; None when the reply says none of them."""
    found = _PAIR.search(text or "")
    if found:
        return {"a": 1.0, "b": 0.0, "tie": 0.5}[found.group(1).lower()]
    return _weighted(top, {"A": 1.0, "B": 0.0, "tie": 0.5, "Tie": 0.5})


def _weighted(top: list[dict[str, Any]] | None, values: dict[str, float]) -> float | None:
    mass = {}
    for entry in top or []:
        token = str(entry.get("token", "")).strip()
        if token in values and token not in mass:
            mass[token] = math.exp(float(entry.get("logprob", -math.inf)))
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(values[t] * p for t, p in mass.items()) / total


class Judge:
    """One judge scorer bound to its endpoint and cache directory."""

    def __init__(self, cfg: JudgeScorer, endpoint: EndpointConfig, cache_dir: Path) -> None:
        self.cfg, self.cache_dir = cfg, cache_dir
        self.client = OpenAIClient(
            cfg.endpoint, cfg.api_key_env, endpoint.timeout_s, endpoint.retries, endpoint.concurrency
        )
        self.replies = 0
        self.junk = 0

    def _ask(self, system: str, user: str, choices: list[str]) -> tuple[str, list[dict[str, Any]]]:
        constraint = {"choice": choices} if self.cfg.constrain else None
        key = hashlib.sha256(
            json.dumps([self.cfg.endpoint, self.cfg.model, system, user, constraint], ensure_ascii=False).encode()
        ).hexdigest()
        cached = self.cache_dir / f"{key}.json"
        if cached.is_file():
            hit = json.loads(cached.read_text(encoding="utf-8"))
            return hit["text"], hit["top"]
        body = {
            "model": self.cfg.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": self.cfg.max_tokens,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": 20,
        }
        if constraint is not None:
            body["structured_outputs"] = constraint
        reply = self.client.chat(body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
            content = (choice.get("logprobs") or {}).get("content") or []
            top = content[0].get("top_logprobs", []) if content else []
        except (KeyError, IndexError, TypeError, AttributeError):
            text, top = "", []
        write_json(cached, {"judge": self.cfg.model, "system": system, "user": user, "text": text, "top": top})
        return text, top

    def _verdict(self, value: float | None) -> float | None:
        self.replies += 1
        self.junk += value is None
        return value

    def score(self, items: list[Item], answers: list[str], advance=None) -> list[float | None]:
        system = SCORE_SYSTEM.format(rubric=self.cfg.rubric)

        def one(pair: tuple[Item, str]) -> float | None:
            text, top = self._ask(system, _user_text(pair[0], {"Answer": pair[1]}), SCORES)
            return self._verdict(parse_score(text, top))

        return self.client.map(one, list(zip(items, answers, strict=True)), advance)

    def compare(self, items: list[Item], model: list[str], baseline: list[str], advance=None) -> list[float | None]:
        """Per item, the model's win share against the baseline (both orders asked)."""
        system = PAIR_SYSTEM.format(rubric=self.cfg.rubric)

        def one(triple: tuple[Item, str, str]) -> float | None:
            item, m, b = triple
            model_first = self._ask(system, _user_text(item, {"Answer A": m, "Answer B": b}), SIDES)
            model_second = self._ask(system, _user_text(item, {"Answer A": b, "Answer B": m}), SIDES)
            first = self._verdict(parse_preference(*model_first))
            second = self._verdict(parse_preference(*model_second))
            votes = [v for v in (first, None if second is None else 1.0 - second) if v is not None]
            return sum(votes) / len(votes) if votes else None

        return self.client.map(one, list(zip(items, model, baseline, strict=True)), advance)

    def metrics(self, values: list[float | None]) -> list[Metric]:
        name = "judge_score" if self.cfg.mode == "score" else "judge_win_rate"
        return [mean_metric(name, values), mean_metric("judge_valid_rate", [float(v is not None) for v in values])]

    def close(self) -> None:
        self.client.close()
