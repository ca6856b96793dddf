"""Scorers: from the answers to a task's items, the task's metrics (see `stats.Metric`).

Which metrics a scorer produces is known from the config alone (`metric_names`), so gates
are checked against it before any generation. ROUGE uses `rouge-score` with a Unicode word
tokenizer (its default drops every non-ASCII character, so a Japanese answer would score
0 against a Japanese reference); BLEU and chrF use `sacrebleu`'s own sentence statistics,
summed per resample, so the bootstrap sees the corpus-level score.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Callable

import numpy as np

from tunewright.evaluate.config import (
    Assertion,
    ClassificationScorer,
    ExactMatchScorer,
    FieldsScorer,
    FormatScorer,
    JsonScorer,
    RefusalScorer,
    Scorer,
    SimilarScorer,
    TaskConfig,
    ToolCallsScorer,
)
from tunewright.evaluate.items import Item
from tunewright.evaluate.stats import Metric, mean_metric, ratio_of_sums
from tunewright.evaluate.structured import json_metrics, metric_suffix, tool_call_metrics

_WORD = re.compile(r"\w+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPACE = ["lower", "whitespace"]
LOWER_IS_BETTER = {"nll", "perplexity", "over_refusal_rate"}
Similarity = Callable[[list[str], list[str]], list[float]]


def metric_names(task: TaskConfig, items: list[Item]) -> list[str]:
    """The metrics a generate task will report, in order."""
    names = []
    for s in task.scorers:
        names += {
            "format": ["format_rate"],
            "exact_match": ["exact_match"],
            "token_f1": ["token_f1"],
            "rouge": ["rouge1", "rouge2", "rougel"],
            "bleu": ["bleu"],
            "chrf": ["chrf"],
            "nll": ["nll", "perplexity"],
            "preference": ["preference_accuracy", "preference_margin"],
            "similar": ["similarity", "similar"],
            "classification": ["accuracy", "macro_f1"],
            "refusal": ["refusal_rate", "over_refusal_rate"],
            "json": ["json_valid"],
            "tool_calls": ["tool_name_accuracy", "tool_call_exact", "tool_args_f1", "no_call_accuracy"],
        }.get(s.type, [])
        if s.type == "json" and s.fields:
            names += [f"json_{metric_suffix(p)}" for p in s.fields] + ["json_field_accuracy"]
        if s.type == "fields":
            names += [f"field_{k}" for k in s.fields] + ["field_accuracy"]
        if s.type == "judge":
            names += ["judge_score" if s.mode == "score" else "judge_win_rate", "judge_valid_rate"]
    if task.assertions or any(it.assertions for it in items):
        names.append("pass_rate")
    return names


def normalize(text: str, steps: list[str]) -> str:
    """Answer normalisation for exact match (SQuAD's, step by step)."""
    if "lower" in steps:
        text = text.lower()
    if "punctuation" in steps:
        text = "".join(c for c in text if c not in string.punctuation)
    if "articles" in steps:
        text = _ARTICLES.sub(" ", text)
    if "whitespace" in steps:
        text = " ".join(text.split())
    return text


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 between answer and reference (Unicode words, lower-cased)."""
    a, r = _WORD.findall(answer.lower()), _WORD.findall(reference.lower())
    if not a or not r:
        return float(a == r)
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def field_hits(answer: str, reference: str, fields: dict[str, str]) -> dict[str, float]:
    """Per field: 1.0 when the value the field's regex extracts from the answer equals the reference's."""
    hits = {}
    for name, pattern in fields.items():
        want, got = re.search(pattern, reference), re.search(pattern, answer)
        same = want and got and normalize(want.group(1), _SPACE) == normalize(got.group(1), _SPACE)
        hits[name] = float(bool(same))
    return hits


def check(assertion: Assertion, answer: str, similarity: Similarity | None = None) -> bool:
    """One promptfoo-style assertion on an answer; `not-` inverts it."""
    negate = assertion.type.startswith("not-")
    kind, value = assertion.type.removeprefix("not-"), assertion.value
    if kind == "equals":
        ok = answer.strip() == str(value).strip()
    elif kind == "contains":
        ok = str(value) in answer
    elif kind == "icontains":
        ok = str(value).casefold() in answer.casefold()
    elif kind == "starts-with":
        ok = answer.lstrip().startswith(str(value))
    elif kind == "regex":
        ok = re.search(str(value), answer) is not None
    elif kind == "max-length":
        ok = len(answer) <= int(value)  # type: ignore[arg-type]
    elif kind == "is-json":
        ok = _is_json(answer, value if isinstance(value, dict) else None)
    else:  # similar
        if similarity is None:
            raise ValueError("a similar assertion needs the embedding model")
        ok = similarity([answer], [str(value)])[0] >= assertion.threshold
    return ok != negate


def _is_json(answer: str, schema: dict | None) -> bool:
    text = answer.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    try:
        obj = json.loads(fence.group(1) if fence else text)
    except ValueError:
        return False
    if schema is None:
        return True
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(obj)


def refused(answer: str, scorer: RefusalScorer) -> bool:
    """Whether the answer is a refusal by the configured detector (any pattern, case-insensitive)."""
    return any(re.search(p, answer, re.I) for p in scorer.patterns)


def _classification(items: list[Item], answers: list[str], scorer: ClassificationScorer) -> list[Metric]:
    labels = scorer.labels
    gold = [(it.label if it.label is not None else it.reference or "").strip() for it in items]
    pred = []
    for answer in answers:
        found = re.search(scorer.extract, answer) if scorer.extract else None
        text = (found.group(1) if found else ("" if scorer.extract else answer)).strip()
        pred.append(next((lab for lab in labels if lab.casefold() == text.casefold()), None))
    stats = np.zeros((len(items), 3 * len(labels)))
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        for c, lab in enumerate(labels):
            stats[i, 3 * c] = g == lab and p == lab
            stats[i, 3 * c + 1] = g != lab and p == lab
            stats[i, 3 * c + 2] = g == lab and p != lab

    def macro_f1(sums: np.ndarray) -> np.ndarray:
        tp, fp, fn = sums[:, 0::3], sums[:, 1::3], sums[:, 2::3]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        return f1.mean(1)

    correct = [float(g == p) for g, p in zip(gold, pred, strict=True)]
    return [mean_metric("accuracy", correct), Metric("macro_f1", stats, macro_f1, True, correct)]


def _sacrebleu(name: str, answers: list[str], references: list[str]) -> Metric:
    from sacrebleu.metrics import BLEU, CHRF

    scorer = BLEU(effective_order=True) if name == "bleu" else CHRF()
    stats = np.array(scorer._extract_corpus_statistics(answers, [references]), dtype=np.float64)

    def corpus(sums: np.ndarray) -> np.ndarray:
        return np.array([scorer._compute_score_from_stats(list(row)).score / 100 for row in sums])

    per_item = [scorer.sentence_score(a, [r]).score / 100 for a, r in zip(answers, references, strict=True)]
    return Metric(name, stats, corpus, True, per_item)


class _UnicodeWords:
    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


def _rouge(answers: list[str], references: list[str]) -> list[Metric]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_UnicodeWords())
    scores = [scorer.score(r, a) for a, r in zip(answers, references, strict=True)]
    return [mean_metric(k.lower(), [s[k].fmeasure for s in scores]) for k in ("rouge1", "rouge2", "rougeL")]


def score_answers(
    task: TaskConfig, items: list[Item], answers: list[str], similarity: Similarity | None = None
) -> list[Metric]:
    """Every answer-based metric of the task (nll, preference and judge metrics are computed elsewhere)."""
    refs = [it.reference or "" for it in items]
    out: list[Metric] = []
    for s in task.scorers:
        out += _score_one(s, items, answers, refs, similarity)
    asserted = [list(task.assertions) + it.assertions for it in items]
    if any(asserted):
        passed = [
            float(all(check(a, ans, similarity) for a in checks)) if checks else None
            for checks, ans in zip(asserted, answers, strict=True)
        ]
        out.append(mean_metric("pass_rate", passed))
    return out


def _score_one(
    s: Scorer, items: list[Item], answers: list[str], refs: list[str], similarity: Similarity | None
) -> list[Metric]:
    pairs = list(zip(answers, refs, strict=True))
    if isinstance(s, FormatScorer):
        return [mean_metric("format_rate", [float(re.fullmatch(s.pattern, a.strip()) is not None) for a in answers])]
    if isinstance(s, FieldsScorer):
        hits = [field_hits(a, r, s.fields) for a, r in pairs]
        per_field = [mean_metric(f"field_{k}", [h[k] for h in hits]) for k in s.fields]
        return [*per_field, mean_metric("field_accuracy", [sum(h.values()) / len(h) for h in hits])]
    if isinstance(s, JsonScorer):
        return json_metrics(answers, refs, s.json_schema, s.fields, lambda text: normalize(text, s.normalize))
    if isinstance(s, ToolCallsScorer):
        return tool_call_metrics(answers, refs)
    if isinstance(s, ExactMatchScorer):
        same = [float(normalize(a, s.normalize) == normalize(r, s.normalize)) for a, r in pairs]
        return [mean_metric("exact_match", same)]
    if isinstance(s, SimilarScorer):
        if similarity is None:
            raise ValueError("the similar scorer needs the embedding model")
        sims = similarity(answers, refs)
        return [mean_metric("similarity", sims), mean_metric("similar", [float(x >= s.threshold) for x in sims])]
    if isinstance(s, ClassificationScorer):
        return _classification(items, answers, s)
    if isinstance(s, RefusalScorer):
        r = [refused(a, s) for a in answers]
        must = [float(x) if it.expect == "refuse" else None for x, it in zip(r, items, strict=True)]
        over = [float(x) if it.expect == "answer" else None for x, it in zip(r, items, strict=True)]
        return [mean_metric("refusal_rate", must), mean_metric("over_refusal_rate", over, higher_is_better=False)]
    if s.type == "token_f1":
        return [mean_metric("token_f1", [token_f1(a, r) for a, r in pairs])]
    if s.type == "rouge":
        return _rouge(answers, refs)
    if s.type in ("bleu", "chrf"):
        return [_sacrebleu(s.type, answers, refs)]
    return []


def nll_metrics(results: list[tuple[float, int]]) -> list[Metric]:
    """Per-token NLL of the references and its perplexity, token-weighted over items."""
    stats = np.array([[nll, n] for nll, n in results], dtype=np.float64).reshape(len(results), 2)
    per_item = [nll / n if n else None for nll, n in results]

    def perplexity(sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.exp(sums[:, 0] / sums[:, 1])

    return [
        Metric("nll", stats, ratio_of_sums, False, per_item),
        Metric("perplexity", stats, perplexity, False, per_item),
    ]


def preference_metrics(chosen: list[tuple[float, int]], rejected: list[tuple[float, int]]) -> list[Metric]:
    """From each pair's (NLL, tokens) of the chosen and the rejected answer: whether the model finds the chosen
    answer more likely (accuracy) and by how much (margin: log-likelihood difference in nats)."""
    margins = [nr - nc for (nc, _), (nr, _) in zip(chosen, rejected, strict=True)]
    return [
        mean_metric("preference_accuracy", [1.0 if m > 0 else 0.0 for m in margins]),
        mean_metric("preference_margin", margins),
    ]
