"""Reusing a prompt prefix whose keys and values another request already computed (prefix caching).

A slot's cache keeps what its last request computed after that request ends. A new request
takes the free slot whose content shares the longest prefix with its prompt under the same
adapter, or, when a running request shares a longer one, a copy of that prefix; only the
rest of the prompt is computed. The chat template's fixed opening (a default system prompt,
say) and repeated prompts are computed once. The arithmetic of each position depends only
on the tokens before it, so reused keys and values are the ones the request would compute.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MIN_REUSE = 8  # shorter shared prefixes are computed again: a copy would not pay


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixIndex:
    """What each slot's cache holds: (adapter, tokens) whose keys and values are valid there.

    Without a match, a new request takes an empty slot, else the one whose content was
    kept longest ago, so content that is still likely to be asked for stays.
    """

    def __init__(self) -> None:
        self.contents: dict[int, tuple[int, list[int]]] = {}
        self.kept_at: dict[int, int] = {}
        self._clock = 0

    def remember(self, slot: int, adapter: int, tokens: list[int]) -> None:
        self._clock += 1
        self.contents[slot], self.kept_at[slot] = (adapter, tokens), self._clock

    def forget(self, slot: int) -> None:
        self.contents.pop(slot, None)
        self.kept_at.pop(slot, None)

    def place(
        self, free: Iterable[int], running: Iterable[tuple[int, int, list[int]]], prompt: list[int], adapter: int
    ) -> tuple[int, int | None, int]:
        """(slot to use, slot to copy a prefix from or None, tokens already computed) for a new prompt.

        `running` gives (slot, adapter, computed tokens) of the requests in flight.
        """
        limit = len(prompt) - 1  # the last prompt token is always computed: its logits start the answer

        def value(s: int) -> tuple[int, int]:
            held = self.contents.get(s)
            length = min(common_prefix(held[1], prompt), limit) if held and held[0] == adapter else 0
            return length, -self.kept_at.get(s, 0)  # then: empty, else least recently kept

        slot = max(sorted(free), key=value)
        kept = value(slot)[0]
        source, copied = None, 0
        for s, a, tokens in running:
            length = min(common_prefix(tokens, prompt), limit) if a == adapter else 0
            if length > copied:
                source, copied = s, length
        if copied > kept and copied >= MIN_REUSE:
            return slot, source, copied
        return slot, None, kept if kept >= MIN_REUSE else 0
