"""/login and /logout."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from pacswatch.web import accounts
from pacswatch.web.auth import (
    SESSION_COOKIE,
    check_csrf,
    login_keys,
    optional_user,
    set_session_cookie,
    settings_of,
)
from pacswatch.web.templating import render

router = APIRouter()


def safe_next(value: str | None) -> str:
    """Where to go after login: a path on this site only (never //host or a scheme)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get("/login")
def login_page(request: Request, next: str | None = None):
    if optional_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", dependencies=[Depends(check_csrf)])
def login(request: Request, name: str = Form(""), password: str = Form(""), next: str = Form("/")):
    settings = settings_of(request)
    limiter = request.app.state.login_limiter
    keys = login_keys(request, name)
    now = settings.clock().timestamp()
    if limiter.blocked(keys, now):
        return render(request, "login.html", status_code=429, next=safe_next(next),
                      error="Too many failed logins from here or for this name; wait a few minutes.")
    user = accounts.authenticate(request.app.state.engine, name, password)
    if user is None:
        limiter.failed(keys, now)
        return render(request, "login.html", status_code=401, next=safe_next(next),
                      error="Wrong user name or password.")
    token = accounts.start_session(request.app.state.engine, user, settings.clock(), settings.session_hours)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, request, token)
    return response


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request):
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.end_session(request.app.state.engine, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
