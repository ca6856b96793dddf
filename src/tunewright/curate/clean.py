"""Text cleaning: unicode repair (ftfy), control characters, whitespace, optional HTML.

Whitespace cleaning keeps leading indentation (code in answers must survive): it turns
exotic spaces into plain ones, drops zero-width characters and trailing spaces, collapses
runs of spaces between words and more than one blank line.

Cleaning changes records rather than removing them; every changed record is logged to the
quarantine as `modified` (with what was fixed) and continues down the pipeline.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser

import ftfy

from tunewright.core.records import Conversation
from tunewright.curate.pipeline import Quarantine, Step

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ODD_SPACE = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_INNER_RUN = re.compile(r"(?<=\S)[ \t]{2,}")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Visible text of an HTML fragment (scripts and styles dropped, blocks become lines)."""
    if "<" not in text and "&" not in text:
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return html.unescape("".join(parser.parts))


def clean_text(text: str, fix_unicode: bool = True, html_strip: bool = False) -> tuple[str, list[str]]:
    """The cleaned text and the names of the fixes that changed it."""
    fixes = []
    if html_strip:
        stripped = strip_html(text)
        if stripped != text:
            fixes.append("html")
            text = stripped
    if fix_unicode:
        fixed = ftfy.fix_text(text, normalization="NFC")
        if fixed != text:
            fixes.append("unicode")
            text = fixed
    no_control = _CONTROL.sub("", text)
    if no_control != text:
        fixes.append("control_chars")
        text = no_control
    spaced = _INNER_RUN.sub(" ", _ZERO_WIDTH.sub("", _ODD_SPACE.sub(" ", text)))
    spaced = _BLANK_LINES.sub("\n\n", _TRAILING.sub("\n", spaced)).strip()
    if spaced != text:
        fixes.append("whitespace")
        text = spaced
    return text, fixes


class Clean(Step):
    name = "clean"
    per_record = True

    def __init__(self, fix_unicode: bool = True, html_strip: bool = False) -> None:
        super().__init__()
        self.fix_unicode = fix_unicode
        self.html_strip = html_strip

    def process(self, records: Iterable[Conversation], quarantine: Quarantine) -> Iterator[Conversation]:
        for record in records:
            applied: set[str] = set()
            for m in record.messages:
                m.content, fixes = clean_text(m.content, self.fix_unicode, self.html_strip)
                applied.update(fixes)
            if applied:
                reason = "cleaned: " + ", ".join(sorted(applied))
                for fix in applied:
                    self.stats.reasons[fix] += 1
                quarantine.add(self.name, reason, record, action="modified")
            yield record
