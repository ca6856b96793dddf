"""Export parity: the export must answer the golden prompts exactly as the trained model did.

Both are run greedily on the same prompts through the same engine; any differing answer
is a divergence (tokenizer, template, merge, precision or generation settings changed).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunewright.core.model_source import ModelSource
from tunewright.core.progress import progress_bar
from tunewright.engine.offline import answer_chats


@dataclass
class ParityResult:
    prompts: int
    diverged: list[dict[str, str]]

    @property
    def passed(self) -> bool:
        return not self.diverged


def check_parity(
    reference: ModelSource,
    exported: ModelSource,
    prompts: list[list[dict[str, str]]],
    ids: list[str],
    max_new_tokens: int = 64,
) -> ParityResult:
    """Generate with both models and list the prompts whose answers differ."""
    answers = []
    for what, source in (("trained model", reference), ("export", exported)):
        with progress_bar(f"golden prompts on the {what}", total=len(prompts)) as advance:
            answers.append([c.text for c in answer_chats(source, prompts, max_new_tokens, advance=advance)])
    diverged = [
        {"id": i, "prompt": p[-1]["content"], "trained": a, "export": b}
        for i, p, a, b in zip(ids, prompts, answers[0], answers[1], strict=True)
        if a != b
    ]
    return ParityResult(len(prompts), diverged)
