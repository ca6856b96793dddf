"""Language identification with py3langid (offline, a few hundred KB of model, ~0.1 ms a record).

Records whose detected language is not in the configured list, or whose normalised
probability is below `min_score`, are quarantined; kept records get `meta["language"]`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from tunewright.core.records import Conversation
from tunewright.curate.filters.quality import training_text
from tunewright.curate.pipeline import Filter

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """ISO 639-1 code and normalised probability of the text's language."""
    lang, prob = _identifier().classify(text)
    return lang, float(prob)


class LanguageFilter(Filter):
    name = "language"

    def __init__(self, languages: list[str], min_score: float = 0.5, text: str = "all") -> None:
        super().__init__()
        self.languages, self.min_score, self.text = set(languages), min_score, text

    def keep(self, record: Conversation) -> bool | tuple[bool, str]:
        lang, score = identify(training_text(record, self.text))
        if lang not in self.languages or score < self.min_score:
            wanted = ", ".join(sorted(self.languages))
            return False, f"language {lang} ({score:.2f}) not in [{wanted}] with score >= {self.min_score}"
        record.meta["language"] = lang
        return True
