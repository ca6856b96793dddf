"""Typed configuration of `tunewright serve` (the YAML in `configs/serve.yaml`)."""

from __future__ import annotations

from pydantic import Field

from tunewright.core.config import StrictModel


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_name: str | None = None
    max_new_tokens: int = Field(128, gt=0)
