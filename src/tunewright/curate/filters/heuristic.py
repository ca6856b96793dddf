"""Heuristic quality filters with NeMo Curator's English semantics and defaults.

Each filter computes one score from the text and keeps the record when the score is on
the right side of its threshold, exactly as NeMo Curator's `heuristic_filter.py` does
(whitespace word splitting, lines split on newlines and paragraphs on blank lines, the
same constant lists and comparison directions). Two presets: `nemo` (NeMo Curator's
English pipeline, meant for web documents) and `sft` (thresholds that make sense for
short prompt/response pairs; n-gram repetition filters only apply to longer texts).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

END_MARKS = (".", "?", "!", '"', "'")
ELLIPSIS_MARKS = ("...", "[...]", "…", "(...)", "[…]", "-»", "read more..", "read more")
COMMON_ENGLISH_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "⁃", "⁌", "⁍", "∙", "○", "●", "◘", "◦", "⦾", "⦿")
WHITESPACE = frozenset("\t\n\r\b ")
BOILERPLATE = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "privacy overview",
    "use of cookies",
    "use cookies",
    "privacy & cookies policy",
    "privacy and cookies policy",
)
ALPHANUM = re.compile(r"[a-zA-Z0-9\n?!,.]")
ALPHA = re.compile(r"[^\W\d_]")
DIGIT = re.compile(r"\d")
PAREN = re.compile(r"[{}⟨⟩\[\]()]")
HASH = re.compile(r"#+")
URL = re.compile(r"http[s]?://(?:[a-zA-Z]|[0-9]|[$\-_@.&+]|[!*\(\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+")


def words(text: str) -> list[str]:
    return text.strip().split()


def lines(text: str) -> list[str]:
    return [x for x in text.split("\n") if x.strip()]


def paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


def _ratio(count: int, total: int) -> float:
    return count / total if total else 1.0


def non_alpha_numeric(text: str) -> float:
    return _ratio(len(text) - len(ALPHANUM.findall(text)), len(text))


def symbols_to_words(text: str) -> float:
    ws = words(text)
    hits = sum(1 for w in (x.strip() for x in ws) if w in ELLIPSIS_MARKS or len(HASH.findall(w)) / len(w) > 0.5)
    return _ratio(hits, len(ws))


def numbers(text: str) -> float:
    return _ratio(len(DIGIT.findall(text)), len(text))


def urls(text: str) -> float:
    return _ratio(sum(len(u) for u in URL.findall(text)), len(text))


def white_space(text: str) -> float:
    return _ratio(sum(1 for c in text if c in WHITESPACE), len(text))


def parentheses(text: str) -> float:
    return _ratio(len(PAREN.findall(text)), len(text))


def long_word(text: str) -> float:
    return float(max((len(w) for w in words(text)), default=0))


def word_count(text: str) -> float:
    return float(len(words(text)))


def mean_word_length(text: str) -> float:
    ws = words(text)
    return sum(len(w) for w in ws) / len(ws) if ws else 0.0


def boilerplate(text: str) -> float:
    paras = paragraphs(text)
    count = 0
    for p in paras:
        p = p.strip().lower()
        if "lorem ipsum" in p:
            return 1.0
        count += any(s in p for s in BOILERPLATE)
    return _ratio(count, len(paras))


def unique_lines(text: str) -> float:
    ls = lines(text)
    return len(set(ls)) / len(ls) if ls else 1.0


def unique_paragraphs(text: str) -> float:
    ps = paragraphs(text)
    return len(set(ps)) / len(ps)


def unique_lines_chars(text: str) -> float:
    ls = lines(text)
    total = len("".join(ls))
    return len("".join(set(ls))) / total if total else 1.0


def unique_paragraphs_chars(text: str) -> float:
    ps = paragraphs(text)
    total = len("".join(ps))
    return len("".join(set(ps))) / total if total else 1.0


def top_ngram(text: str, n: int) -> float:
    """Share of characters covered by the most frequent word n-gram."""
    ws = words(text)
    if len(ws) < n:
        return 1.0
    grams = Counter(tuple(ws[i : i + n]) for i in range(len(ws) - n + 1))
    top = " ".join(grams.most_common(1)[0][0])
    return (len(text) - len(text.replace(top, ""))) / len(text)


def duplicate_ngrams(text: str, n: int) -> float:
    """Share of characters inside word n-grams that occur more than once (overlaps counted once)."""
    ws = words(text)
    if len(ws) < n:
        return 1.0
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    freq = Counter(grams)
    dup_chars, overlap = 0, 0
    for gram in grams:
        if freq[gram] > 1:
            dup_chars += sum(len(w) for w in gram[overlap:]) + min(n - overlap, n - 1)
            overlap = n
        overlap = max(overlap - 1, 0)
    return dup_chars / len(text)


def _line_share(text: str, test: Callable[[str], bool]) -> float:
    ls = lines(text)
    return sum(1 for s in ls if test(s)) / len(ls) if ls else 0.0


def lines_without_end_mark(text: str) -> float:
    return _line_share(text, lambda s: not s.strip().endswith(END_MARKS))


def lines_ending_with_ellipsis(text: str) -> float:
    return _line_share(text, lambda s: s.strip().lower().endswith(ELLIPSIS_MARKS))


def bullet_lines(text: str) -> float:
    return _line_share(text, lambda s: s.strip().startswith(BULLETS))


def common_english_words(text: str) -> float:
    return float(sum(1 for w in words(text) if w in COMMON_ENGLISH_WORDS))


def words_with_letters(text: str) -> float:
    ws = words(text)
    return sum(1 for w in ws if ALPHA.search(w)) / len(ws) if ws else 0.0


@dataclass
class HeuristicFilter:
    """One score function with a lower and/or upper bound (inclusive, as in NeMo Curator)."""

    name: str
    score: Callable[[str], float]
    min: float | None = None
    max: float | None = None
    min_words: int = 0
    measures: str = "score"  # what the score is, for the quarantine reason

    def check(self, text: str) -> tuple[bool, float]:
        if self.min_words and len(words(text)) < self.min_words:
            return True, float("nan")
        value = self.score(text)
        ok = (self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        return ok, value

    def describe(self, value: float) -> str:
        """`repeated_lines: share of unique lines 0.1667 < min 0.5`: the filter, what it measured, the bound."""
        bound = f"< min {self.min}" if self.min is not None and value < self.min else f"> max {self.max}"
        return f"{self.name}: {self.measures} {value:.4g} {bound}"


@dataclass
class Spec:
    score: Callable[[str], float]
    measures: str
    nemo: dict[str, Any]
    sft: dict[str, Any] | None = field(default=None)


def _ngram(n: int, fn: Callable[[str, int], float]) -> Callable[[str], float]:
    return partial(fn, n=n)  # a partial, unlike a lambda, pickles into worker processes


# name -> score, NeMo Curator English defaults, SFT preset (None: not applied for SFT data)
SPECS: dict[str, Spec] = {
    "word_count": Spec(word_count, "words", {"min": 50, "max": 100000}, {"min": 1, "max": 100000}),
    "mean_word_length": Spec(mean_word_length, "mean word length", {"min": 3, "max": 10}, {"min": 2, "max": 15}),
    "non_alpha_numeric": Spec(non_alpha_numeric, "share of non-alphanumeric characters", {"max": 0.25}, {"max": 0.5}),
    "symbols_to_words": Spec(symbols_to_words, "symbols per word", {"max": 0.1}, {"max": 0.2}),
    "numbers": Spec(numbers, "share of digits", {"max": 0.15}, {"max": 0.3}),
    "urls": Spec(urls, "share of URL characters", {"max": 0.2}, {"max": 0.5}),
    "white_space": Spec(white_space, "share of whitespace", {"max": 0.25}, {"max": 0.5}),
    "parentheses": Spec(parentheses, "share of brackets", {"max": 0.1}, {"max": 0.2}),
    "long_word": Spec(long_word, "longest word", {"max": 1000}, {"max": 1000}),
    "repeated_lines": Spec(unique_lines, "share of unique lines", {"min": 0.7}, {"min": 0.5}),
    "repeated_paragraphs": Spec(unique_paragraphs, "share of unique paragraphs", {"min": 0.7}, {"min": 0.5}),
    "repeated_lines_char": Spec(unique_lines_chars, "share of characters in unique lines", {"min": 0.8}, {"min": 0.5}),
    "repeated_paragraphs_char": Spec(
        unique_paragraphs_chars, "share of characters in unique paragraphs", {"min": 0.8}, {"min": 0.5}
    ),
    "top_2gram": Spec(
        _ngram(2, top_ngram),
        "share of characters in the most frequent word 2-gram",
        {"max": 0.2},
        {"max": 0.3, "min_words": 50},
    ),
    "top_3gram": Spec(
        _ngram(3, top_ngram),
        "share of characters in the most frequent word 3-gram",
        {"max": 0.18},
        {"max": 0.28, "min_words": 50},
    ),
    "top_4gram": Spec(
        _ngram(4, top_ngram),
        "share of characters in the most frequent word 4-gram",
        {"max": 0.16},
        {"max": 0.26, "min_words": 50},
    ),
    **{
        f"duplicate_{n}gram": Spec(
            _ngram(n, duplicate_ngrams),
            f"share of characters in repeated word {n}-grams",
            {"max": cut},
            {"max": cut + 0.15, "min_words": 50},
        )
        for n, cut in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    },
    "boilerplate": Spec(boilerplate, "share of boilerplate paragraphs", {"max": 0.4}, {"max": 0.4}),
    "bullets": Spec(bullet_lines, "share of bullet lines", {"max": 0.9}, {"max": 0.9}),
    "ellipsis": Spec(lines_ending_with_ellipsis, "share of lines ending in an ellipsis", {"max": 0.3}, {"max": 0.3}),
    "punctuation": Spec(lines_without_end_mark, "share of lines without end punctuation", {"max": 0.85}),
    "common_words": Spec(common_english_words, "common English words", {"min": 2}),
    "words_with_letters": Spec(words_with_letters, "share of words with letters", {"min": 0.8}, {"min": 0.5}),
}


def build_filters(preset: str, overrides: dict[str, dict[str, Any]], disable: list[str]) -> list[HeuristicFilter]:
    """The filters of a preset, with per-filter threshold overrides, minus the disabled ones."""
    unknown = sorted((set(overrides) | set(disable)) - set(SPECS))
    if unknown:
        raise ValueError(f"unknown heuristic filter(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    out = []
    for name, spec in SPECS.items():
        params = spec.nemo if preset == "nemo" else spec.sft
        if name in overrides:
            params = {**(params or {}), **overrides[name]}
        if params is None or name in disable:
            continue
        out.append(HeuristicFilter(name, spec.score, **params, measures=spec.measures))
    return out
