"""Every route of the application, from the routers it includes: pages need a login, the API a
token, and no POST that changes something is taken from a viewer, from a form without its CSRF
token, or from someone not logged in. A route added later is covered without being named here."""

from __future__ import annotations

import importlib

import pytest
from web_support import csrf_from

from pacswatch.web.app import ROUTER_MODULES

# Open to anyone: logging in and out, and the public pages for owners (public.py).
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("POST", "/logout"), ("GET", "/about"), ("GET", "/optout"),
          ("POST", "/optout"), ("GET", "/optout/confirm/{token}"), ("POST", "/optout/confirm/{token}"),
          ("GET", "/verify/{token}"), ("GET", "/verify/{token}/status")}
VALUES = {"{finding_id}": "1", "{case_id}": "1", "{scan_id}": "1", "{endpoint}": "127.65.1.10:104", "{token}": "x"}


def routes() -> list[tuple[str, str]]:
    out = []
    for name in ROUTER_MODULES:
        for route in importlib.import_module(f"pacswatch.web.{name}").router.routes:
            out += [(method, route.path) for method in sorted(route.methods) if method != "HEAD"]
    return out


def concrete(path: str) -> str:
    for name, value in VALUES.items():
        path = path.replace(name, value)
    assert "{" not in path, f"no value for a parameter of {path}: add it to VALUES"
    return path


GETS = [p for m, p in routes() if m == "GET" and (m, p) not in PUBLIC]
POSTS = [p for m, p in routes() if m == "POST" and (m, p) not in PUBLIC]


def test_the_walk_finds_the_routes():
    assert "/findings/{finding_id}" in GETS and "/cases/{case_id}" in GETS and "/api/v1/scans" in GETS
    assert "/findings/{finding_id}/rescan" in POSTS and "/cases/{case_id}/acknowledge" in POSTS


@pytest.mark.parametrize("path", GETS)
def test_every_page_needs_a_login_and_the_api_a_token(client, path):
    answer = client.get(concrete(path), follow_redirects=False)
    if path.startswith("/api/v1/"):
        assert answer.status_code == 401
    else:
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("path", POSTS)
def test_no_change_from_a_viewer_a_stranger_or_a_form_without_its_token(client, login, app, path):
    anonymous_token = csrf_from(client.get("/login").text)
    stranger = client.post(concrete(path), data={"csrf_token": anonymous_token}, follow_redirects=False)
    assert stranger.status_code in (303, 403), stranger.text  # to the login page, or refused
    assert stranger.status_code != 303 or stranger.headers["location"].startswith("/login")
    login(client, "vic")
    token = csrf_from(client.get("/").text)
    assert client.post(concrete(path), data={"csrf_token": token, "reason": "x", "until": "2099-01-01",
                                             "note": "x", "why": "x", "reply": "x", "kind": "followup",
                                             "cidr": "127.65.0.0/24", "contact": "a@b.example"}).status_code == 403
    client.cookies.clear()
    login(client, "ana")
    assert client.post(concrete(path), data={"reason": "x"}).status_code == 403  # analyst, no CSRF token
