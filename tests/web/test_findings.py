"""/findings: filters, sort, keyset pages, downloads; /findings/{id} and /endpoints/...; the
actions on a finding, their events, and who may take them."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from web_support import HOSTILE_PRODUCT, csrf_from

from pacswatch.web.queries_findings import FilterError, FindingFilter, decode_cursor, network_ranges

ENDPOINT = re.compile(r'<a href="/findings/(\d+)">([^<]+)</a>')


def endpoints(html: str) -> list[str]:
    return [m.group(2) for m in ENDPOINT.finditer(html)]


def ids(html: str) -> list[int]:
    return [int(m.group(1)) for m in ENDPOINT.finditer(html)]


def test_network_ranges():
    assert network_ranges("10.1.0.0/16") == [("10.1.", "10.1/")]
    assert network_ranges("10.1.2.3/32") == [("10.1.2.3", "10.1.2.3\0")]
    assert network_ranges("10.0.0.0/23") == [("10.0.0.", "10.0.0/"), ("10.0.1.", "10.0.1/")]
    assert network_ranges("2001:db8::/32") is None
    with pytest.raises(FilterError):
        network_ranges("10.0.0.0/9x")
    assert network_ranges("10.0.0.0/15") == [("10.0.", "10.0/"), ("10.1.", "10.1/")]
    assert len(network_ranges("10.0.0.0/17")) == 128
    assert network_ranges("10.0.0.128/25")[0] == ("10.0.0.128", "10.0.0.128\0") and \
        len(network_ranges("10.0.0.128/25")) == 128


def test_filter_refuses_unknown_values():
    with pytest.raises(FilterError, match="unknown severity"):
        FindingFilter.from_query({"severity": ["urgent"]})
    with pytest.raises(FilterError, match="sort"):
        FindingFilter.from_query({"sort": ["password"]})
    with pytest.raises(FilterError, match="port"):
        FindingFilter.from_query({"port": ["70000"]})


def test_list_and_filters(client, login):
    login(client, "vic")
    everything = client.get("/findings").text
    assert sorted(endpoints(everything)) == sorted(["127.65.1.10:104", "127.65.1.11:11112", "127.65.2.20:4242",
                                                     "127.65.3.30:8042", "127.65.4.40:104", "127.65.5.50:104"])
    assert endpoints(client.get("/findings?severity=critical").text) == ["127.65.1.10:104", "127.65.4.40:104"]
    assert endpoints(client.get("/findings?status=fixed").text) == ["127.65.1.11:11112"]
    assert "127.65.1.11:11112" not in endpoints(client.get("/findings?status=active").text)
    assert endpoints(client.get("/findings?product=ohif").text) == ["127.65.3.30:8042"]
    assert endpoints(client.get("/findings?port=4242").text) == ["127.65.2.20:4242"]
    assert sorted(endpoints(client.get("/findings?network=127.65.1.0/24").text)) == \
        ["127.65.1.10:104", "127.65.1.11:11112"]
    assert endpoints(client.get("/findings?network=127.65.4.0/23").text) == ["127.65.4.40:104", "127.65.5.50:104"]
    assert endpoints(client.get("/findings?q=127.65.5").text) == ["127.65.5.50:104"]
    assert endpoints(client.get("/findings?last_seen_to=2026-11-03").text) == ["127.65.1.11:11112"]
    assert endpoints(client.get("/findings?first_seen_from=2026-11-03").text) == []
    answer = client.get("/findings?severity=urgent")
    assert answer.status_code == 400 and "unknown severity" in answer.text


def test_owner_filter_and_text_search(client, login, app):
    from sqlalchemy import insert

    from pacswatch.store.notify_tables import attributions

    from web_support import T0

    with app.state.engine.begin() as conn:
        conn.execute(insert(attributions), {"ip": "127.65.2.20", "owner_key": "org:st-elsewhere",
                                            "owner_name": "St. Elsewhere Hospital", "confidence": 0.9,
                                            "reasons": [], "facts": [], "facts_digest": "d" * 32, "decided_at": T0})
    login(client, "vic")
    assert endpoints(client.get("/findings?owner=elsewhere").text) == ["127.65.2.20:4242"]
    assert endpoints(client.get("/findings?q=st.+else").text) == ["127.65.2.20:4242"]


def test_keyset_pages_cover_everything_once_in_every_sort(client, login):
    login(client, "vic")
    for sort in ("severity", "-last_seen", "first_seen", "address", "-port", "product"):
        seen: list[int] = []
        url = f"/findings?limit=2&sort={sort}"
        pages = 0
        while url:
            html = client.get(url).text
            seen += ids(html)
            match = re.search(r'<a href="([^"]+)" id="next-page"', html)
            url = match.group(1).replace("&amp;", "&") if match else None
            pages += 1
        assert len(seen) == 6 == len(set(seen)), sort
        assert pages == 3, sort
    # Severity order: critical first, low last.
    html = client.get("/findings?sort=severity").text
    assert endpoints(html)[0] in ("127.65.1.10:104", "127.65.4.40:104") and endpoints(html)[-1] == "127.65.5.50:104"


def test_a_damaged_cursor_is_a_clear_error(client, login):
    login(client, "vic")
    answer = client.get("/findings?cursor=bm90IGpzb24")
    assert answer.status_code == 400 and "page link is damaged" in answer.text
    with pytest.raises(FilterError):
        decode_cursor("!!!")


def test_csv_download_is_the_filtered_set_and_neutralised(client, login, app):
    from sqlalchemy import update

    from pacswatch.store.tables import services

    # A product name a spreadsheet would run, as a hostile peer might send it.
    with app.state.engine.begin() as conn:
        conn.execute(update(services).where(services.c.ip == "127.65.5.50").values(product="=HYPERLINK(\"x\")"))
    login(client, "vic")
    answer = client.get("/findings.csv?severity=low&severity=critical")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted(r["ip"] for r in rows) == ["127.65.1.10", "127.65.4.40", "127.65.5.50"]
    low = next(r for r in rows if r["ip"] == "127.65.5.50")
    assert low["product"] == "'=HYPERLINK(\"x\")"
    hostile = next(r for r in rows if r["ip"] == "127.65.4.40")
    assert "\x1b" not in hostile["product"] and "\\x1b" in hostile["product"]


def test_json_download(client, login):
    login(client, "vic")
    rows = json.loads(client.get("/findings.json?status=active&sort=-port").text)
    assert [r["port"] for r in rows] == [8042, 4242, 104, 104, 104]
    assert {"owner", "case_id", "triage", "studies"} <= set(rows[0])


def test_downloads_need_a_login(client):
    assert client.get("/findings.csv", follow_redirects=False).status_code == 303


def _finding_id(client, ip):
    html = client.get(f"/findings?q={ip}").text
    return ids(html)[0]


def test_finding_page_reads_like_probe(client, login):
    login(client, "vic")
    finding = _finding_id(client, "127.65.1.10")
    html = client.get(f"/findings/{finding}").text
    assert "127.65.1.10:104" in html and "Orthanc 1.12.4" in html
    assert "<dt>C-FIND allowed</dt><dd>True</dd>" in html and "<dt>studies</dt><dd>12</dd>" in html
    assert "C-FIND open to anyone" in html
    assert html.count('class="tl-look"') == 3 and "first seen (critical)" in html
    assert client.get("/endpoints/127.65.1.10:104").text.count('class="tl-look"') == 3
    # The fixed one: its misses and the fix are in the timeline.
    fixed = client.get("/endpoints/127.65.1.11:11112").text
    assert "fixed (missed twice)" in fixed and "connection-refused" in fixed
    assert client.get("/endpoints/127.65.9.9:104").status_code == 404
    assert client.get("/endpoints/not-an-address").status_code == 404
    assert client.get("/findings/99999").status_code == 404
    assert "Rescan now" not in html  # a viewer gets no action forms


def test_hostile_text_is_escaped(client, login):
    login(client, "ana")
    finding = _finding_id(client, "127.65.4.40")
    for html in (client.get(f"/findings/{finding}").text, client.get("/findings?q=127.65.4").text,
                 client.get("/").text):
        assert "<script>alert" not in html and "<b>Evil" not in html and "<img src=x" not in html
        assert "\x1b" not in html
    html = client.get(f"/findings/{finding}").text
    assert "&lt;script&gt;alert(&#39;pw&#39;)&lt;/script&gt;&lt;b&gt;Evil\\x1b[31mPACS" in html
    assert HOSTILE_PRODUCT not in html


def test_actions_record_who_did_what(client, login, app):
    from sqlalchemy import select

    from pacswatch.store.tables import services

    login(client, "ana")
    finding = _finding_id(client, "127.65.2.20")
    page = client.get(f"/findings/{finding}").text
    token = csrf_from(page)
    assert client.post(f"/findings/{finding}/false-positive", data={"reason": "a test box <b>x</b>",
                                                                    "csrf_token": token}).status_code == 200
    html = client.get(f"/findings/{finding}").text
    assert "(false positive)" in html and "marked a false positive: a test box &lt;b&gt;x&lt;/b&gt;" in html
    assert "<td>ana</td>" in html
    assert "(false positive)" in client.get("/findings?port=4242").text
    assert client.post(f"/findings/{finding}/suppress", data={"until": "2099-01-31", "reason": "",
                                                              "csrf_token": token}).status_code == 200
    assert "(suppressed until 2099-01-31)" in client.get(f"/findings/{finding}").text
    assert client.post(f"/findings/{finding}/suppress", data={"until": "2001-01-01",
                                                              "csrf_token": token}).status_code == 400
    assert client.post(f"/findings/{finding}/clear", data={"csrf_token": token}).status_code == 200
    assert "(suppressed" not in client.get(f"/findings/{finding}").text
    assert client.post(f"/findings/{finding}/rescan", data={"csrf_token": token}).status_code == 200
    with app.state.engine.connect() as conn:
        due = conn.execute(select(services.c.next_due).where(services.c.ip == "127.65.2.20")).scalar_one()
    from pacswatch.web.settings import utc_now

    assert abs((utc_now() - due.replace(tzinfo=utc_now().tzinfo)).total_seconds()) < 60
    assert "rescan requested" in client.get(f"/findings/{finding}").text


def test_viewer_cannot_change_anything(client, login):
    login(client, "vic")
    finding = _finding_id(client, "127.65.2.20")
    token = csrf_from(client.get("/").text)
    for action, data in (("rescan", {}), ("false-positive", {"reason": "x"}), ("suppress", {"until": "2099-01-01"}),
                         ("clear", {})):
        answer = client.post(f"/findings/{finding}/{action}", data={**data, "csrf_token": token})
        assert answer.status_code == 403, action
    assert "marked a false positive" not in client.get(f"/findings/{finding}").text


def test_actions_without_csrf_are_refused(client, login):
    login(client, "ana")
    finding = _finding_id(client, "127.65.2.20")
    assert client.post(f"/findings/{finding}/false-positive", data={"reason": "x"}).status_code == 403
    assert "marked a false positive" not in client.get(f"/findings/{finding}").text


@pytest.mark.parametrize(("query", "expected"), [
    ("severity=critical", ["127.65.1.10:104", "127.65.4.40:104"]),
    ("status=fixed", ["127.65.1.11:11112"]),
    ("product=ohif", ["127.65.3.30:8042"]),
    ("network=127.65.4.0/23&sort=address", ["127.65.4.40:104", "127.65.5.50:104"]),
    ("q=127.65.5", ["127.65.5.50:104"]),
    ("last_seen_to=2026-11-03", ["127.65.1.11:11112"]),
    ("first_seen_from=2026-11-02&first_seen_to=2026-11-02&status=active&sort=-port&limit=2",
     ["127.65.3.30:8042", "127.65.2.20:4242"]),
    ("network=::/0", []),
])
def test_filters_on_both_databases(database_url, query, expected):
    """The same filters on SQLite and PostgreSQL (inet, regexp, to_char: each dialect's SQL)."""
    from urllib.parse import parse_qs

    from web_support import fill

    from pacswatch.store.engine import open_database
    from pacswatch.web.queries_findings import find_page
    from pacswatch.web.sqlbits import register_sqlite_functions

    fill(database_url)
    engine = open_database(database_url)
    engine.dispose()
    register_sqlite_functions(engine)
    try:
        with engine.connect() as conn:
            page = find_page(conn, FindingFilter.from_query(parse_qs(query)))
        assert [f"{r['ip']}:{r['port']}" for r in page.rows] == expected
    finally:
        engine.dispose()


def test_ipv6_network_filter_on_sqlite(tmp_path):
    from web_support import dicom_record, T0

    from pacswatch.findings.work import IntervalSet
    from pacswatch.store import Repository
    from pacswatch.store.engine import open_database
    from pacswatch.web.queries_findings import find_page
    from pacswatch.web.sqlbits import register_sqlite_functions

    url = str(tmp_path / "v6.db")
    with Repository.open(url) as repo:
        scan = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f" * 64, targets_key="k" * 64,
                                plan_size=2)
        repo.ingest(scan, [(0, dicom_record("::1", 104, T0)), (1, dicom_record("127.65.1.1", 104, T0))],
                    work=IntervalSet())
    engine = open_database(url)
    engine.dispose()
    register_sqlite_functions(engine)
    try:
        with engine.connect() as conn:
            rows = find_page(conn, FindingFilter.from_query({"network": ["::1/128"]})).rows
        assert [r["ip"] for r in rows] == ["::1"]
    finally:
        engine.dispose()


def test_triage_filter_follows_the_latest_verdict(client, login, app):
    from datetime import timedelta

    from sqlalchemy import insert

    from pacswatch.store.web_tables import finding_triage
    from pacswatch.web.settings import utc_now

    login(client, "ana")
    fp, suppressed, expired = (_finding_id(client, ip) for ip in ("127.65.2.20", "127.65.3.30", "127.65.5.50"))
    token = csrf_from(client.get("/").text)
    client.post(f"/findings/{fp}/false-positive", data={"reason": "a honeypot", "csrf_token": token})
    client.post(f"/findings/{suppressed}/suppress", data={"until": "2099-01-01", "csrf_token": token})
    with app.state.engine.begin() as conn:  # a suppression that ended yesterday no longer hides it
        conn.execute(insert(finding_triage), {"finding_id": expired, "at": utc_now() - timedelta(days=9),
                                              "user_name": "ana", "action": "suppressed",
                                              "until": utc_now() - timedelta(days=1)})
    assert ids(client.get("/findings?triage=false-positive").text) == [fp]
    assert ids(client.get("/findings?triage=suppressed").text) == [suppressed]
    left = ids(client.get("/findings?triage=none").text)
    assert fp not in left and suppressed not in left and expired in left and len(left) == 4
    client.post(f"/findings/{fp}/clear", data={"csrf_token": token})
    assert fp in ids(client.get("/findings?triage=none").text)
    assert client.get("/findings?triage=maybe").status_code == 400


def test_pages_and_actions_on_both_databases(database_url):
    """The application itself on SQLite and PostgreSQL: log in, list, open, act, download."""
    from fastapi.testclient import TestClient

    from web_support import PASSWORD, T0, do_login, fill

    from pacswatch.store.engine import open_database
    from pacswatch.web import accounts
    from pacswatch.web.app import create_app
    from pacswatch.web.settings import WebSettings

    fill(database_url)
    engine = open_database(database_url)
    accounts.add_user(engine, "ana", "analyst", PASSWORD, T0)
    token = accounts.new_api_token(engine, "ana", T0)
    engine.dispose()
    app = create_app(WebSettings(database_url=database_url, secret=b"p" * 32))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert do_login(client, "ana").status_code == 303
        assert "<div class=\"n sev-critical\">2</div>" in client.get("/").text
        finding = _finding_id(client, "127.65.2.20")
        csrf = csrf_from(client.get(f"/findings/{finding}").text)
        for action, data in (("false-positive", {"reason": "lab box"}), ("suppress", {"until": "2099-02-01"}),
                             ("clear", {}), ("rescan", {})):
            assert client.post(f"/findings/{finding}/{action}", data={**data, "csrf_token": csrf}).status_code == 200
        html = client.get(f"/findings/{finding}").text
        assert "marked a false positive: lab box" in html and "rescan requested" in html
        assert len(client.get("/findings.csv?status=active").text.splitlines()) == 6  # header + 5
        api = client.get("/api/v1/findings?triage=none&sort=-last_seen", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 200 and api.json()["total"] == 6
    app.state.engine.dispose()


def test_an_action_on_a_finding_in_a_case_is_in_the_case_history_too(client, login, app):
    from sqlalchemy import insert, select

    from web_support import T0

    from pacswatch.store.notify_tables import case_events, case_services, cases

    with app.state.engine.begin() as conn:
        case_id = conn.execute(insert(cases).returning(cases.c.id), {
            "owner_key": "org:x", "owner_name": "X Clinic", "state": "notified", "round": 1, "opened_at": T0,
            "updated_at": T0}).scalar_one()
        conn.execute(insert(case_services), {"ip": "127.65.1.10", "port": 104, "case_id": case_id, "added_at": T0})
    login(client, "ana")
    finding = _finding_id(client, "127.65.1.10")
    token = csrf_from(client.get(f"/findings/{finding}").text)
    client.post(f"/findings/{finding}/suppress", data={"until": "2099-03-01", "reason": "owner replacing it",
                                                       "csrf_token": token})
    with app.state.engine.connect() as conn:
        (why,) = conn.execute(select(case_events.c.why).where(case_events.c.case_id == case_id)).scalars()
    assert why == "127.65.1.10:104 suppressed until 2099-03-01: owner replacing it (by ana, dashboard)"
    assert "127.65.1.10:104 suppressed until 2099-03-01" in client.get(f"/findings/{finding}").text
