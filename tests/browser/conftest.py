"""Real headless Chromium (Debian's `chromium`) driven by Playwright, against a real server.

Every page a test opens records the requests it makes, so a test can check that none of them
leaves 127.0.0.1. Screenshots go to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the test module."""
    if sync_playwright is None or not CHROMIUM.exists():
        message = (
            "browser tests need playwright and /usr/bin/chromium (scripts/test.sh installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class Pages:
    """Opens pages (each in a fresh context: its own sessionStorage and localStorage) and
    remembers every URL they requested."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.requested: list[str] = []
        self.errors: list[str] = []
        self._contexts: list[object] = []

    def new(self) -> Page:
        context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        self._contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self.requested.append(request.url))
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(msg.text)
                if msg.type == "error" and not msg.text.startswith("Failed to load resource")
                else None
            ),
        )
        return page

    def foreign(self) -> list[str]:
        """Requested URLs whose host is not 127.0.0.1."""
        return [u for u in self.requested if urlsplit(u).hostname != "127.0.0.1"]

    def close(self) -> None:
        for context in self._contexts:
            context.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def pages(browser: Browser) -> Iterator[Pages]:
    """A page factory that records requests."""
    opened = Pages(browser)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def shoot() -> Callable[[Page, str], Path]:
    """`shoot(page, name)` writes a full-page screenshot and returns its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
