import pytest
from curate_helpers import run_steps

from tunewright.core.pii import find_pii, handle_text, iban_ok, luhn_ok
from tunewright.core.records import to_conversation
from tunewright.curate.pii import PiiStep
from tunewright.curate.pipeline import Quarantine


def kinds(text):
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe@example.com now", [("email", "jane.doe@example.com")]),
        ("call +1 415 555 0134 today", [("phone", "+1 415 555 0134")]),
        ("or 020 7946 0958", [("phone", "020 7946 0958")]),
        ("card 4111 1111 1111 1111 exp", [("credit_card", "4111 1111 1111 1111")]),
        ("card 5500-0000-0000-0004", [("credit_card", "5500-0000-0000-0004")]),
        ("ssn 123-45-6789", [("ssn", "123-45-6789")]),
        ("host 192.168.10.4 down", [("ip_address", "192.168.10.4")]),
        ("v6 2001:db8::8a2e:370:7334 up", [("ip_address", "2001:db8::8a2e:370:7334")]),
        ("iban GB82 WEST 1234 5698 7654 32 ok", [("iban", "GB82 WEST 1234 5698 7654 32")]),
        ("key AKIAIOSFODNN7EXAMPLE leaked", [("secret", "AKIAIOSFODNN7EXAMPLE")]),
        ("api_key = 'abcd1234efgh5678ijkl'", [("secret", "abcd1234efgh5678ijkl")]),
        ("token ghp_" + "a" * 36, [("secret", "ghp_" + "a" * 36)]),
    ],
)
def test_true_positives(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order number 4111111111111112 shipped",  # fails Luhn
        "order 1234567890123456 shipped",  # 16 digits, no issuer prefix + Luhn
        "invoice 2024-11-25 and build 1.2.3.4.5",  # date, version string
        "version 999.1.1.1 is not an address",  # octet out of range
        "ticket 123456789 opened",  # a bare number is not a phone
        "SSN-like 000-12-3456 and 666-12-3456",  # invalid SSN areas
        "GB00 WEST 1234 5698 7654 32",  # IBAN with a bad checksum
        "the ratio was 3:2 at 10:30",  # times are not IPv6
    ],
)
def test_look_alikes_are_not_pii(text):
    assert kinds(text) == []


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE00 3704 0044 0532 0130 00")


def test_modes():
    text = "mail a.b@example.com"
    assert handle_text(text, "redact", ["email"])[0] == "mail [EMAIL]"
    assert handle_text(text, "mask", ["email"])[0] == "mail ***********.com"
    hashed = handle_text(text, "hash", ["email"], salt="s")[0]
    assert hashed.startswith("mail <EMAIL:") and "a.b@" not in hashed
    assert handle_text(text, "report", ["email"]) == (text, {"email": 1})


@pytest.mark.parametrize("mode", ["redact", "mask", "hash", "drop"])
def test_quarantine_never_keeps_the_raw_value(mode):
    rec = to_conversation({"prompt": "reach me at jane@example.com", "response": "ok"}, "s", "r1")
    q = Quarantine()
    step = PiiStep(mode)
    kept = run_steps([rec], [step], q)
    assert "jane@example.com" not in str(q.entries)
    assert step.counts == {"email": 1}
    assert len(kept) == (0 if mode == "drop" else 1)
    if kept:
        assert "jane@example.com" not in kept[0].messages[0].content


def test_report_mode_counts_without_changing():
    rec = to_conversation({"prompt": "ssn 123-45-6789", "response": "ok"}, "s", "r1")
    q = Quarantine()
    kept = run_steps([rec], [PiiStep("report")], q)
    assert kept[0].messages[0].content == "ssn 123-45-6789"
    assert q.entries["pii"][0]["types"] == {"ssn": 1}
    assert "123-45-6789" not in str(q.entries)
