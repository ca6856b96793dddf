"""PII detection and handling: emails, phones, credit cards, US SSNs, IPs, IBANs, secrets.

Detection is pattern matching plus validation, so look-alikes are not flagged: card
numbers must pass the Luhn check and carry a known issuer prefix, IBANs must pass the
mod-97 check, IPs must parse, phone numbers need a `+`, a 3-3-4 grouping or a trunk `0`, SSNs
need their dashes and valid area/group/serial. Modes: `redact` (a placeholder per type),
`mask` (keep the last 4 characters), `hash` (a salted sha256 prefix per value), `drop`
(quarantine the record), `report` (count only). The quarantine stores the handled record,
never the raw value; `scrubber` gives the curation stage the same handling for everything
else the quarantine stores (malformed lines, records other steps removed or changed). The
same detectors clean what `serve` captures before it is stored (`serve/capture.py`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PII_TYPES = ("email", "phone", "credit_card", "ssn", "ip_address", "iban", "secret")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    two, four = int(digits[:2]), int(digits[:4])
    return (
        digits[0] == "4"
        or 51 <= two <= 55
        or 2221 <= four <= 2720
        or two in (34, 37, 36, 38, 65)
        or digits.startswith(("6011", "35", "30"))
    )


def iban_ok(text: str) -> bool:
    """ISO 13616 mod-97 check."""
    s = re.sub(r"\s", "", text).upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 7 <= len(digits) <= 15 and (text.startswith("+") or bool(re.search(r"[\s.()-]", text.strip())))


@dataclass(frozen=True)
class Detector:
    """A pattern with a validator, and cheap pre-checks that skip the regex on most texts."""

    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _: True
    min_digits: int = 0
    needles: tuple[str, ...] = ()

    def may_match(self, lower: str, digits: int) -> bool:
        return digits >= self.min_digits and (not self.needles or any(n in lower for n in self.needles))


_DIGIT = re.compile(r"\d")


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "secret",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"
            r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b"
            r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
            r"|\bxox[baprs]-[A-Za-z0-9-]{10,}"
            r"|\bAIza[0-9A-Za-z_-]{35}\b"
            r"|(?i:\b(?:api[_-]?key|secret|token|password|passwd)\b\s*[:=]\s*['\"]?)([A-Za-z0-9_\-+/=.]{12,})"
        ),
        needles=("private key", "akia", "asia", "gh", "sk-", "xox", "aiza", "key", "secret", "token", "passw"),
    ),
    Detector(
        "email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), needles=("@",)
    ),
    Detector("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_ok, 4),
    Detector("credit_card", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), _card_ok, 13),
    Detector(
        "ssn",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
        min_digits=9,
        needles=("-",),
    ),
    Detector(
        "ip_address",
        re.compile(r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})(?![\w.:])"),
        _ip_ok,
        needles=(".", ":"),
    ),
    Detector(
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"  # +44 20 7946 0958
            r"|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}"  # (415) 555-0134, 415.555.0134
            r"|0\d{2,4}[\s.-]\d{3,4}[\s.-]?\d{3,4})(?![\w-])"  # 020 7946 0958 (trunk prefix)
        ),
        _phone_ok,
        min_digits=7,
    ),
)


@dataclass
class Finding:
    kind: str
    start: int
    end: int


def find_pii(text: str, kinds: Iterable[str] = PII_TYPES) -> list[Finding]:
    """Non-overlapping findings, earlier detectors (secrets, emails) winning overlaps."""
    wanted = set(kinds)
    taken: list[Finding] = []
    lower, digits = text.lower(), len(_DIGIT.findall(text))
    for det in DETECTORS:
        if det.kind not in wanted or not det.may_match(lower, digits):
            continue
        for m in det.pattern.finditer(text):
            g = m.lastindex if det.kind == "secret" and m.lastindex else 0
            start, end = m.span(g)
            if not det.valid(text[start:end]):
                continue
            if any(start < f.end and f.start < end for f in taken):
                continue
            taken.append(Finding(det.kind, start, end))
    return sorted(taken, key=lambda f: f.start)


def _replacement(mode: str, kind: str, value: str, salt: str) -> str:
    if mode == "redact":
        return f"[{kind.upper()}]"
    if mode == "mask":
        keep = 4 if len(value) > 8 else 0
        return "*" * (len(value) - keep) + value[len(value) - keep :]
    digest = hashlib.sha256((salt + value).encode()).hexdigest()[:12]
    return f"<{kind.upper()}:{digest}>"


def handle_text(text: str, mode: str, kinds: Iterable[str], salt: str = "") -> tuple[str, Counter]:
    """Replace (or only count, for report/drop) the PII in `text`; returns text and counts by type."""
    findings = find_pii(text, kinds)
    counts = Counter(f.kind for f in findings)
    if mode in ("report", "drop") or not findings:
        return text, counts
    out, last = [], 0
    for f in findings:
        out += [text[last : f.start], _replacement(mode, f.kind, text[f.start : f.end], salt)]
        last = f.end
    out.append(text[last:])
    return "".join(out), counts


def scrubber(mode: str, kinds: Iterable[str] = PII_TYPES, salt: str = "") -> Callable[[str], str]:
    """A text -> text function that replaces PII as `mode` does (redact for report and drop)."""
    replace = mode if mode in ("redact", "mask", "hash") else "redact"
    kinds = tuple(kinds)
    return lambda text: handle_text(text, replace, kinds, salt)[0]
