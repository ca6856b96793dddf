"""Prometheus metrics of the server (prometheus-client), labelled by served model name.

Latency histograms (time to first token, inter-token latency, end to end), token and
request counters, and running / waiting gauges read from the engine at scrape time; with
capture, its state, record outcomes and PII findings. Each app has its own registry, so two
servers in one process (tests) do not mix their counts.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tunewright.serve.capture import Capture

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)


class CaptureMetrics:
    """Capture's state, record outcomes and PII findings (`Capture.on_state` and `Capture.on_count`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.enabled = Gauge("tunewright_capture_enabled", "1 while requests are captured.", registry=registry)
        self.records = Counter(
            "tunewright_capture_records",
            "Captured requests by outcome (stored, dropped_queue_full, dropped_error) and feedback stored.",
            ["outcome"],
            registry=registry,
        )
        self.pii = Counter(
            "tunewright_capture_pii", "PII findings handled before capture stored them.", ["kind"], registry=registry
        )

    def watch(self, capture: Capture) -> None:
        """Follow `capture`: its state and its counts."""
        capture.on_count, capture.on_state = self.count, self.enabled.set

    def count(self, key: str, n: int) -> None:
        """A capture event: `pii_<kind>` findings or a record outcome."""
        if key.startswith("pii_"):
            self.pii.labels(key.removeprefix("pii_")).inc(n)
        else:
            self.records.labels(key).inc(n)


class ServeMetrics:
    def __init__(self, load: Callable[[], dict[str, dict[str, int]]], capture: bool = False) -> None:
        self.load = load  # {"running": {model: n}, "waiting": {model: n}} at scrape time
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "tunewright_time_to_first_token_seconds",
            "Time to first token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "tunewright_inter_token_latency_seconds",
            "Time between tokens.",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "tunewright_e2e_request_latency_seconds", "Request latency.", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("tunewright_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.generation_tokens = Counter("tunewright_generation_tokens", "Tokens generated.", ["model"], registry=r)
        self.requests = Counter(
            "tunewright_requests", "Finished requests by finish reason.", ["model", "finish_reason"], registry=r
        )
        self.running = Gauge("tunewright_num_requests_running", "Requests decoding.", ["model"], registry=r)
        self.waiting = Gauge("tunewright_num_requests_waiting", "Requests waiting for a slot.", ["model"], registry=r)
        self.shadow = Counter(
            "tunewright_shadow_requests",
            "Requests mirrored to the shadow candidate: answered, failed, or not mirrored because it was busy.",
            ["outcome"],
            registry=r,
        )
        self.canary = Counter(
            "tunewright_canary_requests",
            "Requests to the canaried name by the arm that answered them: candidate or production.",
            ["arm"],
            registry=r,
        )
        self.canary_state = Gauge(
            "tunewright_canary_state",
            "1 for the canary's state: observing, passed, promoted, rolled_back (or held, when promotion was refused).",
            ["state"],
            registry=r,
        )
        # only where capture is configured, so `tunewright_capture_enabled 0` means it turned off
        self.capture = CaptureMetrics(r) if capture else None

    def render(self) -> bytes:
        """The exposition text, with the gauges refreshed from the engine."""
        load = self.load()
        for gauge, key in ((self.running, "running"), (self.waiting, "waiting")):
            gauge.clear()
            for model, n in load.get(key, {}).items():
                gauge.labels(model).set(n)
        return generate_latest(self.registry)
