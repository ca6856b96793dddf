"""Turning generated tokens into text deltas that never have to be taken back.

A delta is held back while the text ends in an incomplete UTF-8 sequence (the tokenizer
shows it as U+FFFD) or in what could be the beginning of a stop string, so the streamed
text always equals the final text, cut where a stop string began.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


class Detokenizer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.sent = 0  # characters already emitted

    def update(self, token_ids: list[int]) -> tuple[str, bool]:
        """The new text to emit for the tokens so far, and whether a stop string ended it."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            delta = text[self.sent : cut]
            self.sent = max(self.sent, cut)
            return delta, True
        end = len(text.rstrip("\ufffd"))
        end -= max((self._partial(text[:end], stop) for stop in self.stops), default=0)
        delta = text[self.sent : end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return delta, False

    @staticmethod
    def _partial(text: str, stop: str) -> int:
        """Length of the longest proper prefix of `stop` that `text` ends with."""
        return next((k for k in range(min(len(stop) - 1, len(text)), 0, -1) if text.endswith(stop[:k])), 0)

    def flush(self, token_ids: list[int]) -> str:
        """Whatever was held back, at the end of a request that no stop string ended."""
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        delta = text[self.sent :]
        self.sent = len(text)
        return delta
