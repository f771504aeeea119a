"""The public pages without a browser: what a verify look says about one endpoint (pure), the
rate limit per address, and links that are not ours; and the analysts' opt-out form."""

from __future__ import annotations

import re

import pytest

from pacswatch.web.public import OPTOUT_PER_HOUR, PUBLIC_PER_MINUTE, outcome_of


@pytest.mark.parametrize(("status", "severity", "said"), [
    (None, None, "checking"),
    ("blocked", None, "not checked (on the opt-out list or out of scope)"),
    ("connection-refused", None, "closed"),
    ("io-timeout", None, "closed"),
    ("success", None, "answers, nothing exposed"),
    ("success", "low", "reachable, but refuses unknown callers"),
    ("success", "critical", "still exposed"),
    ("rejected", "medium", "still exposed"),
])
def test_outcome_of_one_look(status, severity, said):
    assert outcome_of(status, severity) == said


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match
    return match.group(1)


def test_the_optout_form_is_rate_limited_per_address(client):
    token = _csrf(client.get("/optout").text)
    codes = [client.post("/optout", data={"network": "not a network", "csrf_token": token}).status_code
             for _ in range(OPTOUT_PER_HOUR + 1)]
    assert codes == [422] * OPTOUT_PER_HOUR + [429]


def test_public_pages_are_rate_limited_per_address(client):
    codes = [client.get("/about").status_code for _ in range(PUBLIC_PER_MINUTE + 1)]
    assert codes[:-1] == [200] * PUBLIC_PER_MINUTE and codes[-1] == 429


def test_links_that_are_not_ours_are_refused(client):
    for path in ("/verify/1.99999999999.AAAAAAAAAAAAAAAAAAAAAA", "/verify/garbage", "/verify/1.1.x/status",
                 "/optout/confirm/1.99999999999.AAAAAAAAAAAAAAAAAAAAAA"):
        answer = client.get(path)
        assert answer.status_code in (403, 404), path
        assert "not one of ours" in answer.text or answer.status_code == 404, path


def test_an_analyst_adds_an_opt_out_through_the_command_lines_function_and_a_viewer_cannot(client, login, web_db):
    from pacswatch.store.repository import Repository

    login(client, "vic")
    token = _csrf(client.get("/optouts").text)  # the log-out form's: a valid token for this session
    assert client.post("/optouts", data={"network": "127.65.1.10", "contact": "soc@x.example",
                                         "csrf_token": token}).status_code == 403
    client.cookies.clear()
    login(client, "ana")
    token = _csrf(client.get("/optouts").text)
    bad = client.post("/optouts", data={"network": "127.65.1.300", "contact": "soc@x.example", "csrf_token": token})
    assert bad.status_code == 422 and "127.65.1.300" in bad.text
    answer = client.post("/optouts", data={"network": "127.65.1.10", "contact": "soc@x.example", "note": "phone call",
                                           "csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303
    with Repository.open(web_db) as repo:
        (entry,) = repo.optouts()
        assert (entry["cidr"], entry["contact"], entry["added_by"]) == ("127.65.1.10", "soc@x.example", "ana (dashboard)")
        # Its findings closed as opted-out at once, as after `pacswatch optout add`.
        assert {f["status"] for f in repo.findings() if f["ip"] == "127.65.1.10"} == {"opted-out"}
