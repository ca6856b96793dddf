"""Typed configuration of `tunewright serve` (the YAML in `configs/serve.yaml`).

Each field's docstring is its one-line description in `tunewright config show serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tunewright.core.config import StrictModel, workspace_config
from tunewright.core.export_versions import parse_ref
from tunewright.core.model_source import ModelSource
from tunewright.core.pii import PII_TYPES
from tunewright.core.precision import DEVICE_PATTERN
from tunewright.core.registry import ALIASES
from tunewright.core.thresholds import Thresholds
from tunewright.engine.requests import EngineConfig
from tunewright.runtimes.vllm import VllmConfig


class BatchingConfig(StrictModel):
    max_num_seqs: int = Field(32, gt=0)
    """Requests decoding together (KV-cache slots; the cache is allocated for all of them at start)."""
    max_model_len: int = Field(2048, gt=8)
    """Prompt + answer tokens per request (also bounded by the model's own context)."""
    max_num_batched_tokens: int = Field(512, gt=0)
    """Tokens per forward pass: one per decoding request plus chunks of prompts being read."""
    max_waiting: int = Field(256, ge=0)
    """Requests queued for a slot; beyond this new requests get 429."""


class CaptureConfig(StrictModel):
    enabled: bool = False
    """Record each request and its answer (PII removed first) in the workspace's capture store."""
    sample_rate: float = Field(1.0, ge=0, le=1)
    """Share of requests captured (chosen at random per request); feedback is taken for captured ones only."""
    pii: Literal["redact", "mask", "hash", "drop-content"] = "redact"
    """What happens to PII before anything is stored: redact ([EMAIL]) | mask (****1234) | hash (<EMAIL:sha256>) |
    drop-content (a record with any PII keeps its metadata but no text)."""
    pii_types: list[str] = Field(default_factory=lambda: list(PII_TYPES))
    """The PII kinds looked for (curation's detectors)."""
    hash_salt_env: str | None = None
    """Environment variable with the salt of pii: hash (null: unsalted)."""
    workload_header: str = "x-workload-id"
    """Request header naming the client or workload (else the body's `user`)."""
    path: str = "monitor/capture.sqlite"
    """The store, relative to the workspace."""
    queue_size: int = Field(10000, gt=0)
    """Records waiting to be written; when full, new ones are dropped (counted in /metrics), never waited for."""
    max_bytes: int = Field(1024**3, gt=0)
    """Size cap of the store; beyond it the oldest records go."""
    max_age_days: float = Field(30, gt=0)
    """Records older than this go."""
    otlp_endpoint: str | None = None
    """An OTLP/HTTP traces URL (e.g. http://127.0.0.1:4318/v1/traces): each captured request is also sent as an
    OpenTelemetry GenAI span (needs `pip install 'tunewright[otel]'`)."""
    otlp_content: bool = False
    """Put the messages and answers (PII removed as in the store) on the spans too."""

    @field_validator("pii_types")
    @classmethod
    def _known(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")
        return kinds


class ShadowConfig(StrictModel):
    """Mirror a share of one served name's chat requests to a candidate adapter: its answer is captured beside
    production's (`shadow_of` in the captured request) and never returned."""

    candidate: str | None = None
    """The adapter that answers in the shadow: a name in `adapters` (null: no shadow)."""
    name: str | None = None
    """The served name whose traffic is mirrored (null: the model's own name)."""
    share: float = Field(0.1, ge=0, le=1)
    """Share of that name's chat requests mirrored (chosen at random per request)."""
    pace: float = Field(0.125, gt=0, le=1)
    """While production requests run, the share of engine steps a shadow request advances in (1: every step); its
    adapter row makes a step dearer for the whole batch, so it is paid in this share of steps."""
    max_inflight: int = Field(1, ge=1)
    """Shadow requests generating at once, each with a KV-cache slot of its own beyond batching.max_num_seqs; a
    request that finds them all busy is not mirrored (counted), so the shadow's extra load is bounded whatever
    production's traffic."""


class CanaryConfig(StrictModel):
    """Route a weight of one served name's traffic to a candidate registry version and let the monitor's
    thresholds decide: a breach rolls the candidate's alias back (a registry move with the reason) and stops
    routing to it; a clean sample leaves it in place, or promotes it through `promote`'s gates."""

    candidate: str | None = None
    """The candidate: NAME@ALIAS of an adapter export of the model being served (e.g. support@staging; null: no
    canary). Serve a version of the same export name (e.g. `serve support@production`)."""
    name: str | None = None
    """The served name whose traffic is split (null: the model's own name)."""
    weight: float = Field(0.1, gt=0, le=1)
    """Share of that name's requests the candidate answers (chosen at random per request)."""
    min_requests: int = Field(50, ge=1)
    """Candidate requests captured before the thresholds decide (no decision on fewer)."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """What a breach is: the monitor's thresholds on the candidate's requests; answer length and refusal rate
    are compared with production's answers in the same window (input_drift does not apply)."""
    promote_to: Literal["staging", "production"] | None = None
    """When the sample is clean, promote the candidate to this alias through promote's gates and send it all of
    the name's traffic (null: leave it in place at its weight)."""
    check_every_s: float = Field(5, gt=0)
    """Seconds between looks at the candidate's captured requests."""

    @field_validator("candidate")
    @classmethod
    def _alias_ref(cls, ref: str | None) -> str | None:
        if ref is None:
            return None
        parsed = parse_ref(ref)
        if parsed is None or parsed.selector not in ALIASES:
            raise ValueError(f"{ref!r}: expected NAME@ALIAS, ALIAS in {', '.join(ALIASES)} (moved back on a breach)")
        return ref


def load_serve_config(workspace: Path) -> ServeConfig:
    """The workspace's `configs/serve.yaml` (the defaults where it has none)."""
    return workspace_config(workspace, "serve.yaml", ServeConfig)


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    """Bind address (also: serve --host)."""
    port: int = Field(8000, ge=0, le=65535)
    """Port (0 picks a free one; also: serve --port)."""
    model_name: str | None = None
    """Name clients send as "model" (null: the export's directory name)."""
    max_new_tokens: int = Field(512, gt=0)
    """Cap on max_tokens per request."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights, activations and KV cache in this type (sampling and log-probs in float32); auto: the model's
    own type where the machine computes it fast (bf16 on CPUs with AVX-512 BF16 or AMX, and on GPUs), else
    float32. Also vLLM's --dtype when vllm.dtype is auto."""
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    """Where the tunewright engine runs: auto (the first CUDA GPU PyTorch sees, else the CPU) | cpu | cuda | cuda:N."""
    engine: Literal["tunewright", "vllm"] = "tunewright"
    """tunewright (this process) | vllm (launch `vllm serve` from its own environment; GPUs, tensor parallel)."""
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    """Continuous batching of the tunewright engine."""
    adapters: dict[str, str] = Field(default_factory=dict)
    """LoRA adapters served by name: {name: path} (also: serve --adapter NAME=PATH)."""
    adapters_dir: str | None = None
    """A directory of adapters, one per subdirectory named after it (NIM's layout), re-scanned."""
    adapters_rescan_s: float = Field(30, gt=0)
    """Seconds between scans of adapters_dir."""
    api_key_env: str | None = None
    """Environment variable holding the API key every route but health needs (null: no key)."""
    request_timeout_s: float | None = Field(600, gt=0)
    """A request still running after this many seconds ends (504; null: no limit)."""
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    """Largest request body accepted (413 beyond)."""
    access_log: bool = True
    """One JSON line per request on stderr (never the prompt text)."""
    shutdown_grace_s: float = Field(30, ge=0)
    """On SIGTERM / Ctrl-C, seconds in-flight requests get to finish."""
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    """Production capture: each request and answer, PII removed, in the workspace (for `tunewright monitor`)."""
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    """Settings for engine: vllm."""
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    """Shadow traffic: a candidate adapter answers a share of requests unseen, for comparison in the capture."""
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    """Canary release: a candidate version answers a weight of a name's traffic; the thresholds roll it back."""

    @model_validator(mode="after")
    def _shadow_needs(self) -> ServeConfig:
        candidate = self.shadow.candidate
        if candidate is None:
            return self
        if candidate not in self.adapters:
            raise ValueError(
                f"shadow.candidate {candidate!r}: not one of the served adapters ({', '.join(self.adapters)})"
            )
        if not self.capture.enabled:
            raise ValueError("shadow.candidate: shadow answers are only kept in the capture; set capture.enabled=true")
        if self.engine != "tunewright":
            raise ValueError("shadow.candidate: shadow traffic runs on the tunewright engine")
        return self

    @model_validator(mode="after")
    def _canary_needs(self) -> ServeConfig:
        if self.canary.candidate is None:
            return self
        if not self.capture.enabled:
            raise ValueError("canary.candidate: the canary is judged on the capture; set capture.enabled=true")
        if self.engine != "tunewright":
            raise ValueError("canary.candidate: canary routing runs on the tunewright engine")
        return self

    def served(self, source: ModelSource) -> ModelSource:
        """`source` in the dtype and on the device this config asks for (`auto` resolved for this machine; vLLM
        runs in its own environment and picks its own device)."""
        return source.in_dtype(self.dtype, self.device if self.engine == "tunewright" else "cpu")

    def vllm_settings(self) -> VllmConfig:
        """vLLM's settings, its dtype taken from `dtype` when `vllm.dtype` is left at auto."""
        if self.vllm.dtype != "auto" or self.dtype == "auto":
            return self.vllm
        return self.vllm.model_copy(update={"dtype": self.dtype})

    def engine_config(self) -> EngineConfig:
        """The tunewright engine's settings from `batching` (the model's context bounds max_model_len), with a slot
        more for each shadow request that may be in flight, so the shadow does not take production's slots."""
        b = self.batching
        shadow = self.shadow.max_inflight if self.shadow.candidate is not None else 0
        return EngineConfig(b.max_num_seqs + shadow, b.max_model_len, b.max_num_batched_tokens, b.max_waiting)
