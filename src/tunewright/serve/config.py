"""Typed configuration of `tunewright serve` (the YAML in `configs/serve.yaml`).

Each field's docstring is its one-line description in `tunewright config show serve`.
"""

from __future__ import annotations

from pydantic import Field

from tunewright.core.config import StrictModel


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    """Bind address (also: serve --host)."""
    port: int = Field(8000, ge=0, le=65535)
    """Port (0 picks a free one; also: serve --port)."""
    model_name: str | None = None
    """Name clients send as "model" (null: the export's directory name)."""
    max_new_tokens: int = Field(128, gt=0)
    """Cap on max_tokens per request."""
