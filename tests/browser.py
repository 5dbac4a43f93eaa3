"""What the browser tests share: Debian's Chromium through Playwright (headless, one per module
through the ``browser`` fixture in tests/conftest.py), a page signed in to a served fleet, a page
opened once its data is drawn, and axe-core's serious and critical violations."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.authn import browser_login

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
BROWSER = [pytest.mark.browser, needs_chromium]
"""The marks of a module that drives Chromium: ``pytestmark = BROWSER``."""
WIDE: ViewportSize = {"width": 1360, "height": 900}
"""The fleet pages' viewport: an admin's screen."""


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def signed_in(browser: Browser, url: str, name: str, password: str, *,
              viewport: ViewportSize | None = None) -> Iterator[Page]:
    """A page of its own (a fresh context: no cookie shared with other pages) signed in to the
    fleet at ``url`` as ``name``; closed afterwards."""
    page = browser.new_context(viewport=viewport or WIDE).new_page()
    try:
        browser_login(page, url, name, password)
        yield page
    finally:
        page.context.close()


def loaded(page: Page, url: str) -> None:
    """Open ``url`` and wait until the page has drawn its data once."""
    page.goto(url)
    page.wait_for_selector("body[data-loaded]", state="attached", timeout=15_000)


def shots_dir(artifacts: Path, name: str) -> Path:
    """test-artifacts/<name>/, made if missing: where a module's screenshots go."""
    out = artifacts / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def axe_serious(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (each with the
    first offending element)."""
    spec = importlib.util.find_spec("axe_playwright_python")  # the package bundles axe-core's axe.min.js
    assert spec is not None and spec.origin is not None, "pip install axe-playwright-python (dev extra)"
    page.evaluate((Path(spec.origin).parent / "axe.min.js").read_text())
    result: dict[str, Any] = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']} ({v['nodes'][0]['target'] if v['nodes'] else ''})"
            for v in result["violations"] if v.get("impact") in ("serious", "critical")]
