"""Prometheus alerting rules from the monitor's thresholds."""

import yaml

from tunewright.core.thresholds import Thresholds
from tunewright.monitor.alerts import alert_rules


def test_alert_rules_follow_the_thresholds():
    rules = {r["alert"]: r for r in yaml.safe_load(alert_rules(Thresholds(error_rate=0.02)))["groups"][0]["rules"]}
    assert "> 0.02" in rules["TunewrightErrorRate"]["expr"] and "TunewrightSlowRequests" in rules
    fewer = yaml.safe_load(alert_rules(Thresholds(error_rate=None, p95_latency_s=None)))["groups"][0]["rules"]
    assert {r["alert"] for r in fewer} == {"TunewrightCaptureOff", "TunewrightCaptureDropping"}
