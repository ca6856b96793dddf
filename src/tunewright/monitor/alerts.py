"""Prometheus alerting rules for `tunewright serve`'s `/metrics`, from the monitor's thresholds.

Only metrics the server exports are used: request outcomes (`tunewright_requests_total` by finish
reason), the end-to-end latency histogram, and capture's state and drops. Quality checks that
need the captured answers (validity, drift, feedback) are `monitor check`'s, run from cron or CI.
"""

from __future__ import annotations

import yaml

from tunewright.core.thresholds import Thresholds


def _rule(name: str, expr: str, severity: str, summary: str, hold: str | None = None) -> dict:
    rule = {"alert": name, "expr": expr, **({"for": hold} if hold else {})}
    return {**rule, "labels": {"severity": severity}, "annotations": {"summary": summary}}


def alert_rules(t: Thresholds) -> str:
    """A Prometheus rules file (groups: tunewright) as YAML text."""
    rules = []
    if t.error_rate is not None:
        failed = 'sum by (model) (rate(tunewright_requests_total{finish_reason=~"error|timeout|abort"}[5m]))'
        expr = f"{failed} / sum by (model) (rate(tunewright_requests_total[5m])) > {t.error_rate}"
        summary = f"{{{{ $labels.model }}}}: more than {t.error_rate:.0%} of requests fail"
        rules.append(_rule("TunewrightErrorRate", expr, "page", summary, "10m"))
    if t.p95_latency_s is not None:
        p95 = "histogram_quantile(0.95, sum by (le, model) (rate(tunewright_e2e_request_latency_seconds_bucket[5m])))"
        summary = f"{{{{ $labels.model }}}}: p95 latency above {t.p95_latency_s:g} s"
        rules.append(_rule("TunewrightSlowRequests", f"{p95} > {t.p95_latency_s}", "ticket", summary, "10m"))
    off = "capture turned itself off (store not writable); see the server log"
    rules.append(_rule("TunewrightCaptureOff", "tunewright_capture_enabled == 0", "ticket", off, "5m"))
    dropped = 'increase(tunewright_capture_records_total{outcome=~"dropped_.*"}[15m]) > 0'
    summary = "captured requests are being dropped (queue full or store errors)"
    rules.append(_rule("TunewrightCaptureDropping", dropped, "ticket", summary))
    return yaml.safe_dump({"groups": [{"name": "tunewright", "rules": rules}]}, sort_keys=False, width=120)
