"""The overview: counts now, the weekly trend, per-scan exposure, fixes and the tops, from the
fixture's three scans (conftest.py): six endpoints, one of which (.11) closed after the first."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from conftest import T0

from pacswatch.web.queries_overview import weekly_active, weeks_back


def test_weekly_active_walks_back_from_today():
    weeks = ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert weekly_active(10, {"2026-11-16": 3, "2026-11-09": -1}, weeks) == \
        [("2026-11-02", 8), ("2026-11-09", 7), ("2026-11-16", 10)]


def test_weeks_back_are_mondays():
    weeks = weeks_back(datetime(2026, 12, 6, 18, tzinfo=timezone.utc), 3)  # a Sunday
    assert weeks == ["2026-11-16", "2026-11-23", "2026-11-30"]


def test_overview_numbers(client, login):
    login(client, "vic")
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    data = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html).group(1))
    # Three full scans, the later two without .11 (refused): 6, then 5 services with a severity.
    assert data["scans"]["services"] == [6, 5, 5]
    # Studies: 12 each for .10 and the hostile .40, 0 for .11; patients 5 + 5.
    assert data["scans"]["studies"] == [24, 24, 24] and data["scans"]["patients"] == [10, 10, 10]
    # .11 was missed twice (a week apart): fixed at the third scan, 14 days after it was first seen.
    assert sum(data["fixes"]["fixed"]) == 1
    assert 'id="median-fix">14.0 days' in html
    assert data["weekly"]["open"][-1] == 5
    assert "No countries: no GeoIP database is configured" in html and "country-map" not in html
    assert ">OHIF Viewer</a>" in html and ">104</a>" in html and "127.65.1.0/24" in html


def test_finished_scans_are_summed_once(client, login, app):
    from sqlalchemy import func, select

    from pacswatch.store.web_tables import scan_exposure

    login(client, "vic")
    client.get("/")
    with app.state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(scan_exposure)).scalar_one() == 3
    client.get("/")  # kept: not inserted twice
    with app.state.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(scan_exposure)).scalar_one() == 3


def test_overview_at_a_later_clock(web_settings):
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from conftest import do_login

    from pacswatch.web.app import create_app

    app = create_app(replace(web_settings, clock=lambda: T0.replace(month=12, day=20)))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        do_login(client, "vic")
        assert client.get("/").status_code == 200
    app.state.engine.dispose()


def test_a_kept_overview_is_refreshed_when_the_data_changed_or_scans_are_left():
    from pacswatch.web.queries_overview import needs_refresh

    assert needs_refresh(None, (1,), 0)
    assert not needs_refresh((1,), (1,), 0)
    assert needs_refresh((1,), (2,), 0)
    assert needs_refresh((1,), (1,), 2)


def test_the_overview_follows_a_change_in_the_background(web_settings):
    import time

    from fastapi.testclient import TestClient
    from conftest import do_login
    from sqlalchemy import update

    from pacswatch.store.tables import findings, scans
    from pacswatch.web.app import create_app

    app = create_app(web_settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        do_login(client, "vic")
        assert '<div class="n sev-low">1</div>' in client.get("/").text
        with app.state.engine.begin() as conn:  # as a rescan would: a change, and the scan's heartbeat
            conn.execute(update(findings).where(findings.c.severity == "low").values(severity="high"))
            conn.execute(update(scans).where(scans.c.id == 3).values(updated_at=datetime.now(timezone.utc)))
        # This view shows the kept numbers (and starts their recomputation); a later one the new.
        assert '<div class="n sev-low">1</div>' in client.get("/").text
        deadline = time.monotonic() + 20
        while '<div class="n sev-low">0</div>' not in client.get("/").text:
            assert time.monotonic() < deadline, "the overview was not recomputed"
            time.sleep(0.1)
        assert not app.state.overview_cache.refreshing
    app.state.engine.dispose()


def test_overview_numbers_on_both_databases(database_url):
    """The overview's SQL on SQLite and PostgreSQL (dates and intervals are each dialect's)."""
    from conftest import fill

    from pacswatch.store.engine import open_database
    from pacswatch.web.queries_overview import load

    fill(database_url)
    engine = open_database(database_url)
    try:
        with engine.connect() as conn:
            view = load(conn, datetime.now(timezone.utc))
        assert view.exposed == {"services": 5, "studies": 24, "patients": 10}
        assert [s["services"] for s in view.per_scan] == [6, 5, 5]
        assert view.fixes_counted == 1 and view.median_days_to_fix == 14.0
        assert view.weekly_open[-1][1] == 5
        assert dict(view.top_ports)[104] == 3 and ("127.65.1.0/24", 1) in view.top_networks
        assert ("OHIF Viewer", 1) in view.top_products
    finally:
        engine.dispose()


def _country_database(path):
    """A MaxMind-format database made here (mmdb-writer), read by the real maxminddb reader."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="PW-Test-Country")
    writer.insert_network(IPSet(["127.65.1.0/24"]), {"country": {"iso_code": "NL"}})
    writer.insert_network(IPSet(["127.65.2.0/23"]), {"registered_country": {"iso_code": "DE"}})
    writer.to_db_file(str(path))
    return path


def test_countries_with_a_geoip_database(web_settings, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient
    from conftest import do_login

    from pacswatch.web.app import create_app

    app = create_app(replace(web_settings, geoip_path=_country_database(tmp_path / "c.mmdb")))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        do_login(client, "vic")
        html = client.get("/").text
    app.state.engine.dispose()
    table = re.search(r'<table id="countries">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr><td[^>]*>([^<]+)</td><td class=\"num\">(\d+)</td></tr>", table)
    # Active: .1.10 (NL); .2.20 and .3.30 (DE, registered); .4.40 and .5.50 unknown; .1.11 was fixed.
    assert rows == [("DE", "2"), ("NL", "1"), ("not in the database", "2")]
    assert "PW-Test-Country" in html and "geoip-missing" not in html
    # The map: an inline SVG of every country of the outline; shaded exactly where the test
    # data's countries are, darker for more, each with its count on hover.
    svg = re.search(r'<svg id="country-map"[^>]*>(.*?)</svg>', html, re.S).group(1)
    paths = re.findall(r'<path d="([^"]+)" fill="(#[0-9a-f]{6})"([^>]*)><title>([^<]+)</title></path>', svg)
    assert len(paths) > 150 and all(d.startswith("M") and d.endswith("Z") for d, *_ in paths)
    shaded = {re.search(r'data-country="(\w+)"', extra).group(1): (fill, title)
              for _, fill, extra, title in paths if "shaded" in extra}
    assert shaded.keys() == {"DE", "NL"}
    assert shaded["DE"][1] == "Germany: 2 exposed services" and shaded["NL"][1] == "Netherlands: 1 exposed service"
    assert shaded["DE"][0] != shaded["NL"][0]
    unshaded = {fill for _, fill, extra, _ in paths if "shaded" not in extra}
    assert len(unshaded) == 1 and unshaded.isdisjoint({fill for fill, _ in shaded.values()})
    assert "France: 0 exposed services" in svg


def test_a_file_that_is_not_a_geoip_database_is_refused_at_start(web_settings, tmp_path):
    from dataclasses import replace

    import pytest

    from pacswatch.web.app import create_app
    from pacswatch.web.geoip import GeoIpError

    bad = tmp_path / "not.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(GeoIpError, match="cannot read the GeoIP database"):
        create_app(replace(web_settings, geoip_path=bad))


def test_traps_and_findings_marked_by_a_person_are_not_counted_as_exposed(client, login, app, web_settings):
    """The overview counts what `pacswatch stats` counts: a trap (here an analyst's 'honeypot')
    and a finding marked a false positive are left out of the cards and the exposed services,
    and said to be left out."""
    from sqlalchemy import select

    from conftest import csrf_from

    from pacswatch.store import Repository
    from pacswatch.store.tables import findings

    with app.state.engine.connect() as conn:
        by_ip = dict(conn.execute(select(findings.c.ip, findings.c.id)).all())
    login(client, "ana")
    before = client.get("/").text
    assert '<div class="n sev-low">1</div>' in before and 'id="left-out"' not in before
    token = csrf_from(before)
    assert client.post(f"/findings/{by_ip['127.65.5.50']}/false-positive",
                       data={"reason": "a test box", "csrf_token": token}).status_code in (200, 303)
    with Repository.open(web_settings.database_url) as repo:
        assert repo.mark_finding(by_ip["127.65.2.20"], "honeypot", "a canary we run") is not None
        stats = repo.stats()
    from pacswatch.web.pages_overview import compute

    compute(app.state.engine, app.state.overview_cache, web_settings.clock)  # as the background refresh does
    html = client.get("/").text
    view = app.state.overview_cache.view
    assert view.left_out == {"traps": 1, "marked by a person": 1}
    assert view.exposed["services"] == stats["now"]["exposed_services"] == 3
    assert view.exposed_by_severity == {k: v for k, v in stats["findings_by_severity"].items()}
    assert '<div class="n sev-low">0</div>' in html and '<div class="n sev-medium">0</div>' in html
    assert 'id="left-out"' in html and "1 trap " in html
