"""What the browser tests share: how Chromium is launched, this run's addresses, the hostile
strings planted in the database, and where screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--metrics-recording-only",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
SCREENSHOTS = _TESTS.parent / "test-artifacts" / "screenshots"
README_IMAGE = _TESTS.parent / "docs" / "img" / "overview.png"
NET = f"127.66.{os.getpid() % 200}"  # this run's /24 (by-hand range of the dashboard's public pages)
CLOSED_IP = f"{NET}.99"
CONTACT = "it@lab-hospital.example.org"
HOSTILE_OWNER = "<b>Lab</b> Hospital <script>window.__pwned = 'owner'</script>"
HOSTILE_PRODUCT = "<script>window.__pwned = 'product'</script><img src=x onerror=\"window.__pwned='img'\">Evil\x1b[31mPACS\u202e"


def shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def chromium() -> Iterator:
    """Debian's Chromium, headless, driven by Playwright (whose own browsers are never
    downloaded). Start it after anything that runs asyncio.run in this thread (a lab, a scan):
    Playwright's sync API keeps an event loop running here."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
