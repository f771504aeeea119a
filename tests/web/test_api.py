"""/api/v1 with per-user bearer tokens, and its documentation page."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from web_support import T0

from pacswatch.web import accounts


@pytest.fixture
def token(app):
    return accounts.new_api_token(app.state.engine, "vic", T0, "tests")


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_api_needs_a_valid_token(client, login, token):
    assert client.get("/api/v1/findings").status_code == 401
    assert client.get("/api/v1/findings", headers=auth("pw_not-a-token")).status_code == 401
    assert client.get("/api/v1/findings", headers={"Authorization": f"Basic {token}"}).status_code == 401
    login(client, "admin")  # a browser session is not an API credential
    assert client.get("/api/v1/scans").status_code == 401
    assert client.get("/api/v1/scans", headers=auth(token)).status_code == 200


def test_token_is_stored_as_a_hash_and_dies_with_its_user(app, client, token):
    from sqlalchemy import select

    from pacswatch.store.web_tables import api_tokens

    with app.state.engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash, api_tokens.c.last_used_at)).one()
    assert stored.token_hash == accounts.token_hash(token) and token not in stored.token_hash
    client.get("/api/v1/scans", headers=auth(token))
    with app.state.engine.connect() as conn:
        assert conn.execute(select(api_tokens.c.last_used_at)).scalar_one() is not None
    accounts.remove_user(app.state.engine, "vic")
    assert client.get("/api/v1/scans", headers=auth(token)).status_code == 401


def test_findings_filters_and_pages(client, token):
    answer = client.get("/api/v1/findings?severity=critical", headers=auth(token)).json()
    assert answer["total"] == 2 and {f["ip"] for f in answer["findings"]} == {"127.65.1.10", "127.65.4.40"}
    assert answer["next"] is None
    seen, query, pages = [], "limit=4&sort=-port", 0
    while query is not None:
        page = client.get(f"/api/v1/findings?{query}", headers=auth(token)).json()
        seen += [f["id"] for f in page["findings"]]
        query, pages = page["next"], pages + 1
        assert query is None or dict(parse_qsl(query))["sort"] == "-port"
    assert pages == 2 and len(seen) == len(set(seen)) == 6
    bad = client.get("/api/v1/findings?severity=urgent", headers=auth(token))
    assert bad.status_code == 400 and "unknown severity" in bad.json()["detail"]


def test_one_finding_and_endpoint(client, token):
    first = client.get("/api/v1/findings?q=127.65.1.10", headers=auth(token)).json()["findings"][0]
    one = client.get(f"/api/v1/findings/{first['id']}", headers=auth(token)).json()
    assert one["finding"]["id"] == first["id"] and one["product"] == "Orthanc"
    dicom = next(f["facts"] for f in one["facts"] if f["section"] == "DICOM")
    assert dicom["C-FIND allowed"] is True and dicom["studies"] == "12"
    assert [e["kind"] for e in one["timeline"]].count("look") == 3
    assert client.get("/api/v1/endpoints/127.65.1.10:104", headers=auth(token)).json()["finding"]["id"] == first["id"]
    assert client.get("/api/v1/endpoints/127.65.1.10:105", headers=auth(token)).status_code == 404
    assert client.get("/api/v1/findings/4242", headers=auth(token)).status_code == 404


def test_cases_and_scans(app, client, token):
    from sqlalchemy import insert

    from pacswatch.store.notify_tables import case_services, cases

    with app.state.engine.begin() as conn:
        case_id = conn.execute(insert(cases).returning(cases.c.id), {
            "owner_key": "org:x", "owner_name": "X Clinic", "state": "notified", "round": 1, "opened_at": T0,
            "updated_at": T0}).scalar_one()
        conn.execute(insert(case_services), {"ip": "127.65.1.10", "port": 104, "case_id": case_id, "added_at": T0})
    listed = client.get("/api/v1/cases", headers=auth(token)).json()
    assert [(c["id"], c["state"], c["services"]) for c in listed] == [(case_id, "notified", ["127.65.1.10:104"])]
    assert client.get(f"/api/v1/cases/{case_id}", headers=auth(token)).json()["owner_name"] == "X Clinic"
    assert client.get("/api/v1/cases?state=closed", headers=auth(token)).json() == []
    assert client.get(f"/api/v1/cases/{case_id + 1}", headers=auth(token)).status_code == 404
    finding = client.get("/api/v1/findings?q=127.65.1.10", headers=auth(token)).json()["findings"][0]
    assert finding["case_id"] == case_id
    scans = client.get("/api/v1/scans", headers=auth(token)).json()
    assert [s["id"] for s in scans] == [3, 2, 1] and scans[0]["status"] == "finished"
    assert "command" not in scans[0] and "parameters" not in scans[0]
    assert [s["id"] for s in client.get("/api/v1/scans?before=3&limit=1", headers=auth(token)).json()] == [2]


def test_api_is_documented(client, login):
    schema = client.get("/api/v1/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/api/v1/findings", "/api/v1/findings/{finding_id}", "/api/v1/endpoints/{endpoint}", "/api/v1/cases",
            "/api/v1/cases/{case_id}", "/api/v1/scans", "/api/v1/scans/{scan_id}"} <= paths
    assert not any(p.startswith("/findings") or p == "/login" for p in paths)  # pages are not the API
    assert client.get("/api/docs", follow_redirects=False).status_code == 303
    login(client, "vic")
    page = client.get("/api/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
