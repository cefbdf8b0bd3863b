"""A real browser for the console: Debian's chromium driven by Playwright.

Playwright's own browser download does not work here, so the tests launch /usr/bin/chromium (or
CONSOLE_CHROMIUM). `.ci/run` installs it and a CJK font where they are missing and sets
BROWSER_REQUIRED=1: then a missing browser fails the run instead of skipping these tests.
Screenshots of every page go to var/screenshots/ (or CONSOLE_SCREENSHOTS), which git ignores.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", str(ROOT / "var" / "screenshots")))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per test module. Not for the session: Playwright's sync API keeps an
    event loop running in this thread while it is open, and the tests after these call asyncio.run."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("BROWSER_REQUIRED"):
            pytest.fail(f"no chromium at {CHROMIUM} (BROWSER_REQUIRED is set)")
        pytest.skip(f"no chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (no cookies) per test; scripts the page runs are noticed."""
    ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the page screenshots go."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
