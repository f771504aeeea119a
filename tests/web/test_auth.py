"""Accounts, sessions, roles, CSRF and the login rate limit, through the real application."""

from __future__ import annotations

from web_support import PASSWORD, csrf_from, do_login

from pacswatch.web.auth import BROWSER_COOKIE, SESSION_COOKIE


def test_pages_need_a_login(client):
    answer = client.get("/findings?severity=critical", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/findings%3Fseverity%3Dcritical"


def test_login_sets_a_strict_session_cookie_and_logout_ends_it(client):
    answer = do_login(client, "ana")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain HTTP here
    page = client.get("/")
    assert page.status_code == 200 and "ana (analyst)" in page.text
    client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_session_cookie_is_secure_over_tls(web_settings):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from pacswatch.web.app import create_app

    app = create_app(replace(web_settings, tls=True))
    with TestClient(app, base_url="https://127.0.0.1") as client:
        answer = do_login(client, "ana")
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
        assert "Secure" in cookie
    app.state.engine.dispose()


def test_wrong_password_and_unknown_user_are_refused_alike(client):
    assert do_login(client, "ana", "not the password").status_code == 401
    assert do_login(client, "nobody", "not the password").status_code == 401
    assert SESSION_COOKIE not in client.cookies


def test_login_rate_limit(client):
    for _ in range(5):
        assert do_login(client, "ana", "wrong password!").status_code == 401
    # The right password does not help once the limit is reached: the next try is refused unseen.
    refused = do_login(client, "ana")
    assert refused.status_code == 429 and "Too many failed logins" in refused.text
    assert SESSION_COOKIE not in client.cookies


def test_post_without_or_with_a_wrong_csrf_token_is_refused(client):
    client.get("/login")
    assert client.post("/login", data={"name": "ana", "password": PASSWORD}).status_code == 403
    assert client.post("/login", data={"name": "ana", "password": PASSWORD, "csrf_token": "0" * 64}).status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_csrf_token_of_another_browser_is_refused(app, client):
    from fastapi.testclient import TestClient

    token = csrf_from(client.get("/login").text)
    with TestClient(app, base_url="http://127.0.0.1") as other:
        other.get("/login")
        assert other.cookies.get(BROWSER_COOKIE) != client.cookies.get(BROWSER_COOKIE)
        answer = other.post("/login", data={"name": "ana", "password": PASSWORD, "csrf_token": token})
        assert answer.status_code == 403


def test_a_logged_in_post_needs_the_session_token(client, login):
    login(client, "ana")
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in


def test_login_next_stays_on_this_site(client):
    page = client.get("/login?next=//elsewhere.invalid/x")
    assert 'name="next" value="/"' in page.text
    answer = client.post("/login", data={"name": "ana", "password": PASSWORD, "next": "https://elsewhere.invalid/",
                                         "csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert answer.headers["location"] == "/"


def test_security_headers(client):
    answer = client.get("/login")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
