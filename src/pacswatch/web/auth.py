"""Who is asking, and may they: sessions, roles, CSRF, the login rate limit, API tokens.

Pages depend on `current_user` (a login page when there is none) or `require_role("analyst")`
(admin > analyst > viewer), declared as `user: CurrentUser` or `user: Analyst` (`Admin`); every POST route depends on `check_csrf`; /api/v1 on `api_user`
(a bearer token from `pacswatch users token NAME`).

CSRF: a form carries an HMAC of the session token (or, before login, of a random per-browser
cookie) under the server's secret; a POST without it, or with another browser's, is refused
with 403. Session cookies are HttpOnly, SameSite=Lax, and Secure when served over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from starlette.responses import Response

from pacswatch.web.accounts import ROLES, User, session_user, token_user
from pacswatch.web.db import reading
from pacswatch.web.settings import WebSettings

SESSION_COOKIE = "pacswatch_session"
BROWSER_COOKIE = "pacswatch_browser"  # before login: what a form's CSRF token is bound to
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"  # htmx requests send it (base.html sets hx-headers)


class LoginRequired(Exception):
    """A page needs a logged-in user; app.py answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_redirect_target(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")


def settings_of(request: Request) -> WebSettings:
    return request.app.state.settings


# --- who is asking -------------------------------------------------------------------------------


def optional_user(request: Request) -> User | None:
    """The logged-in user, or None; looked up once per request."""
    if getattr(request.state, "user_looked_up", False):
        return request.state.user
    user = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with reading(request.app.state.engine) as conn:
            user = session_user(conn, token, settings_of(request).clock())
    request.state.user, request.state.user_looked_up = user, True
    return user


def current_user(request: Request) -> User:
    user = optional_user(request)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    return user


def require_role(role: str) -> Callable[..., User]:
    """A dependency: the current user, who must hold `role` or a higher one (403 otherwise)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def dependency(user: Annotated[User, Depends(current_user)]) -> User:
        if not user.may(role):
            raise HTTPException(status_code=403, detail=f"this needs the {role} role; you are a {user.role}")
        return user

    return dependency


# The parameters a route declares: `user: CurrentUser` (any role), `user: Analyst` (analyst or
# admin), `user: Admin`.
CurrentUser = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require_role("analyst"))]
Admin = Annotated[User, Depends(require_role("admin"))]


# --- CSRF ----------------------------------------------------------------------------------------


def _binding(request: Request) -> str:
    """What the CSRF token is bound to: the session, else this browser's random cookie."""
    session = request.cookies.get(SESSION_COOKIE)
    if session and optional_user(request) is not None:
        return "session:" + session
    browser = request.cookies.get(BROWSER_COOKIE) or getattr(request.state, "new_browser_id", None)
    if browser is None:  # set by the middleware on every answer that lacks it
        browser = request.state.new_browser_id = secrets.token_urlsafe(24)
    return "browser:" + browser


def csrf_token(request: Request) -> str:
    """The token a form of this page must send back (templates: `{{ csrf_field() }}`)."""
    key = settings_of(request).secret
    return hmac.new(key, b"csrf\0" + _binding(request).encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: Request) -> None:
    """A dependency of every POST: 403 unless the form field or the header carries this
    browser's token."""
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette keeps it: the route's Form fields read it again
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, csrf_token(request)):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong: reload the page "
                                                    "and try again")


async def browser_cookie_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Give a browser its random cookie the first time a form token is bound to it."""
    response = await call_next(request)
    new_id = getattr(request.state, "new_browser_id", None)
    if new_id and not request.cookies.get(BROWSER_COOKIE):
        response.set_cookie(BROWSER_COOKIE, new_id, httponly=True, samesite="lax",
                            secure=settings_of(request).tls, path="/")
    return response


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    settings = settings_of(request)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(settings.session_hours * 3600), httponly=True,
                        samesite="lax", secure=settings.tls, path="/")


# --- login rate limit ----------------------------------------------------------------------------


class LoginLimiter:
    """Failed logins per client address and per user name in a sliding window: past the limit,
    logins from that address or for that name are refused (429) until old failures age out.
    One per application (app.state.login_limiter); threads share it, hence the lock."""

    def __init__(self, attempts: int, window_seconds: float) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, keys: tuple[str, ...], now: float) -> bool:
        with self._lock:
            return any(len(self._recent(k, now)) >= self.attempts for k in keys)

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
            if len(self._failures) > 100_000:  # a flood of names: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]


def login_keys(request: Request, name: str) -> tuple[str, ...]:
    client = request.client.host if request.client else "unknown"
    return ("addr:" + client, "name:" + name.lower())


# --- the API -------------------------------------------------------------------------------------


def api_user(request: Request) -> User:
    """A dependency of /api/v1: the user of the bearer token (401 without a valid one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    user = None
    if scheme.lower() == "bearer" and token.strip():
        user = token_user(request.app.state.engine, token.strip(), settings_of(request).clock())
    if user is None:
        raise HTTPException(status_code=401, detail="an API token is needed: Authorization: Bearer TOKEN "
                            "(pacswatch users token NAME)", headers={"WWW-Authenticate": "Bearer"})
    return user
