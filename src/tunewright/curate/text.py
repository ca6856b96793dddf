"""Text normalisation shared by dedup and decontamination (so they agree on 'the same')."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, lower case, whitespace collapsed: two texts equal after this are duplicates."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()
