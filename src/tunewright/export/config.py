"""Typed configuration of `tunewright export` (its options, as a library call takes them)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tunewright.core.config import StrictModel
from tunewright.runtimes.vllm import VllmConfig


class ExportConfig(StrictModel):
    run: str = "latest:train"
    """The training run to export (a run id, its path, or latest:train)."""
    format: str = "merged"
    """merged | adapter | gguf"""
    name: str | None = None
    """Export name: a new version goes to exports/<name>/v<N> (null: <run>-<format>)."""
    golden: str = "data/raw/eval/golden.jsonl"
    """Golden prompts re-run on the export (relative to the workspace)."""
    allow_failed_eval: bool = False
    """Export even though the run's latest eval failed a gate (recorded in the manifest and README)."""
    max_shard_size: str = "5GB"
    """Merged: safetensors shards of at most this."""
    gguf_type: str = "f16"
    """GGUF: f16 | q8_0."""
    verify_with: str | None = None
    """Also answer the golden prompts with vllm (merged/adapter) or llama.cpp (gguf)."""
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    """How to start vLLM for --verify-with vllm (the CLI takes `vllm:` of configs/serve.yaml)."""

    def recorded(self) -> dict[str, Any]:
        """The config as the run's manifest keeps it (the vLLM settings only when vLLM verified it)."""
        return self.model_dump(exclude=None if self.verify_with == "vllm" else {"vllm"})
