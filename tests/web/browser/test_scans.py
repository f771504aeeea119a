"""/scans in a real Chromium: a real `pacswatch scan` running in its own process shows its
progress live (htmx reloads the table), Stop interrupts it (SIGINT, as Ctrl-C), Resume starts
`pacswatch scan --resume ID`, which finishes it."""

from __future__ import annotations

import time

import pytest
from .browser_world import NET, shot

from pacswatch.store.repository import Repository
from pacswatch.web import scanproc

pytestmark = pytest.mark.slow


def _row(page, scan_id: int):
    return page.locator(f"#scans tr[data-scan='{scan_id}']")


def _progress(page, scan_id: int) -> float:
    return float(_row(page, scan_id).locator("progress").get_attribute("value") or 0)


def test_a_running_scan_shows_progress_stops_and_resumes(world, page_of):
    before = {s["id"] for s in Repository.open(world.settings.database_url).scans(None)}
    # 128 closed ports at 8 new connections a second: about sixteen seconds of scanning, time for
    # the page to see it run on a slow machine.
    with Repository.open(world.settings.database_url) as repo:
        scanproc.start(["scan", f"{NET}.128/25", "--ports", "9", "--rate", "8", "--no-attribute", "--quiet"],
                       repo.engine, name="browser-test-scan")
    deadline = time.monotonic() + 20
    while True:
        with Repository.open(world.settings.database_url) as repo:
            new = [s for s in repo.scans(None) if s["id"] not in before]
        if new:
            break
        assert time.monotonic() < deadline, "the scan did not start"
        time.sleep(0.1)
    scan_id = new[0]["id"]

    page = page_of("ana")
    page.goto("/scans")
    page.wait_for_selector(f"#scans tr[data-scan='{scan_id}'][data-status=running]")
    first = _progress(page, scan_id)
    # No reload by the test: htmx polls the table, and the bar moves.
    page.wait_for_function(f"""() => {{
        const bar = document.querySelector("#scans tr[data-scan='{scan_id}'] progress");
        return bar && parseFloat(bar.getAttribute('value')) > {first} }}""", timeout=15_000)
    shot(page, "scans-running")

    _row(page, scan_id).locator("button:text('Stop')").click()
    page.wait_for_selector(f"#scans tr[data-scan='{scan_id}'][data-status=interrupted]", timeout=15_000)
    stopped_at = _progress(page, scan_id)
    assert stopped_at < 100
    shot(page, "scans-stopped")

    _row(page, scan_id).locator("button:text('Resume')").click()
    page.wait_for_selector(f"#scans tr[data-scan='{scan_id}'][data-status=finished]", timeout=60_000)
    assert _progress(page, scan_id) == 100
    with Repository.open(world.settings.database_url) as repo:
        scan = repo.scan(scan_id)
    assert scan is not None and scan["done"] == scan["plan_size"] == 128
    assert scan["counts"].get("connection-refused") == 128


def test_a_viewer_sees_scans_without_buttons(world, page_of):
    page = page_of("vic")
    page.goto("/scans")
    assert page.locator("#scans").count() == 1
    assert page.locator("#scans button").count() == 0
