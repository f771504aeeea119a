"""The analyst's pages in a real Chromium: the overview draws its charts (pixels on a canvas),
findings filter and open, the CSV download holds the filtered set, and text a hostile server
planted in a finding (a script, markup, control characters) is shown as text: the DOM holds no
element made from it, no script of it ran, no dialog opened."""

from __future__ import annotations

import csv
import io

import pytest
from .browser_world import HOSTILE_PRODUCT, NET, shot

pytestmark = pytest.mark.slow

PAINTED = """(selector) => {
    const canvas = document.querySelector(selector);
    if (!canvas || !canvas.width || !canvas.height) return 0;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return painted; }"""


def test_the_overview_draws_its_charts(world, page_of):
    page = page_of("ana")
    page.goto("/")
    page.wait_for_selector("#chart-scans canvas")
    painted = page.evaluate(PAINTED, "#chart-scans canvas")
    assert painted > 500, painted  # lines, axes and labels: not an empty canvas
    shot(page, "overview")


def test_findings_filter_open_and_download_csv(world, page_of):
    page = page_of("ana")
    page.goto("/findings")
    everything = int(page.locator("#total").inner_text().replace(",", ""))
    page.select_option("select[name=severity]", ["critical"])
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_url("**/findings?*severity=critical*")
    total = int(page.locator("#total").inner_text().replace(",", ""))
    assert 0 < total < everything
    severities = page.locator("#findings tbody td.sev").all_inner_texts()
    assert severities and set(severities) == {"critical"} and len(severities) == total
    shot(page, "findings")

    with page.expect_download() as info:
        page.click("#download-csv")
    text = open(info.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == total and {r["severity"] for r in rows} == {"critical"}

    page.locator("#findings tbody a[href^='/findings/']").first.click()
    page.wait_for_url("**/findings/*")
    assert page.locator("main").inner_text().strip()
    shot(page, "finding")


def test_hostile_text_in_a_finding_is_shown_escaped(world, page_of):
    page = page_of("ana")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"/findings?q={NET}.98")
    row = page.locator("#findings tbody tr")
    assert row.count() == 1
    pages = [page.url]
    row.locator("a[href^='/findings/']").first.click()
    page.wait_for_url("**/findings/*")
    pages.append(page.url)
    for url in pages:
        page.goto(url)
        main = page.locator("main")
        text = main.inner_text()
        # The peer's words are there, as text: the tags literally, the control characters made visible.
        assert "<script>window.__pwned = 'product'</script>" in text, url
        assert "\\x1b" in text and "\x1b" not in text and "\u202e" not in text, url
        # Nothing of it became markup or ran.
        assert main.locator("script").count() == 0, url
        assert main.locator("img").count() == 0, url
        assert page.evaluate("window.__pwned") is None, url
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0, url
    assert dialogs == []
    shot(page, "finding-hostile")
    assert HOSTILE_PRODUCT.startswith("<script>")  # what was planted (browser_world.py)


def test_screenshots_of_the_other_pages(world, page_of):
    """One screenshot per page the other tests do not take (CI keeps test-artifacts/)."""
    anonymous = page_of(None)
    anonymous.goto("/login")
    shot(anonymous, "login")
    page = page_of("ana")
    host, port = world.lab_endpoint.rsplit(":", 1)
    page.goto(f"/endpoints/{host}:{port}")
    assert host in page.locator("main").inner_text()
    shot(page, "endpoint")
    page.goto("/api/docs")
    shot(page, "api-docs")
    answer = page.goto("/cases/99999")
    assert answer is not None and answer.status == 404
    shot(page, "error-404")
