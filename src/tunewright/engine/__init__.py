"""The one generation engine: continuous batching over a transformers model, shared by serve, eval and export.

`Engine` (engine.py) schedules requests; a runner does the forward passes: `LlamaRunner`
for Llama-family models (slot KV cache, flat token batches, multi-LoRA) and `HFRunner`
for everything else.
"""

from tunewright.engine.engine import Engine
from tunewright.engine.params import Completion, Output, SamplingParams, TokenLogprob
from tunewright.engine.requests import EngineConfig, RequestHandle

__all__ = ["Completion", "Engine", "EngineConfig", "Output", "RequestHandle", "SamplingParams", "TokenLogprob"]
