"""Headless Debian Chromium driven by Playwright, and the review page's keyboard moves, for the browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make chromium)")
# without the background-networking flags Chromium keeps dialling Google's hosts, which a closed network refuses
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator:
    """A fresh page in headless Chromium (its own profile, so its local storage starts empty)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_context(viewport={"width": width, "height": height}).new_page()
        finally:
            browser.close()


def start_reviewing(page, url: str, name: str) -> None:
    """Open the review page and give a reviewer name by keyboard."""
    page.goto(url)
    page.wait_for_selector("#reviewer", state="visible")
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    page.wait_for_selector("#review:not(.hidden), #done:not(.hidden)")


def judge(page, key: str, comment: str = "", correction: str = "") -> str:
    """Judge the pair on screen by keyboard (1-4), after typing a comment (c) and a correction (e); its id."""
    shown = page.text_content("#pair")
    for shortcut, text in (("c", comment), ("e", correction)):
        if text:
            page.keyboard.press(shortcut)
            page.keyboard.type(text)
            page.keyboard.press("Escape")
    progress = page.inner_text("#progress")
    page.keyboard.press(key)
    page.wait_for_function("p => document.getElementById('progress').textContent !== p", arg=progress)
    return shown.split(", ")[1].rstrip(")")


def screenshot(page, name: str, tmp_path: Path) -> Path:
    """A PNG of the page (into $TUNEWRIGHT_SCREENSHOTS too when set: the README's pictures)."""
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("TUNEWRIGHT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out
