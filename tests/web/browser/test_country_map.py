"""The overview's country map in Chromium: the inline SVG is drawn (no JavaScript needed for it),
the test data's countries are filled darker than the rest, and hovering one shows its count in
its <title>. The GeoIP database is made here with mmdb-writer; a screenshot is kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from .browser_world import chromium, shot


@pytest.fixture
def web_settings(web_db, tmp_path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    from pacswatch.web.settings import WebSettings

    path = tmp_path / "countries.mmdb"
    writer = MMDBWriter(ip_version=4, database_type="PW-Test-Country")
    writer.insert_network(IPSet(["127.65.1.0/24"]), {"country": {"iso_code": "NL"}})
    writer.insert_network(IPSet(["127.65.2.0/23"]), {"registered_country": {"iso_code": "BR"}})
    writer.to_db_file(str(path))
    return replace(WebSettings(database_url=web_db, secret=b"s" * 32), geoip_path=path)


def test_the_country_map_is_drawn_and_shaded(live_server):
    with chromium() as browser:
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900},
                                      java_script_enabled=False)  # the map needs none
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=name]", "vic")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/login" not in u)
        svg = page.locator("#country-map")
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        shaded = page.locator("#country-map path.shaded")
        assert sorted(shaded.evaluate_all("ps => ps.map(p => p.dataset.country)")) == ["BR", "NL"]
        brazil = page.locator('#country-map path[data-country="BR"]')
        assert brazil.locator("title").text_content() == "Brazil: 2 exposed services"
        area = brazil.bounding_box()  # Brazil is drawn where South America is: left of centre, below it
        assert area is not None and area["x"] < box["x"] + box["width"] / 2 and area["y"] > box["y"] + box["height"] / 2
        fills = set(page.locator("#country-map path:not(.shaded)").evaluate_all(
            "ps => ps.map(p => getComputedStyle(p).fill)"))
        assert len(fills) == 1 and brazil.evaluate("p => getComputedStyle(p).fill") not in fills
        svg.scroll_into_view_if_needed()
        shot(page, "overview-country-map")
        context.close()
