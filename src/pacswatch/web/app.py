"""The application: `create_app(settings)` opens the database and includes every page's router.

app.state holds `settings` (WebSettings), `engine` (the SQLAlchemy engine of the same database
as the CLI), `login_limiter`, `overview_cache` and `geoip` (a CountryReader, or None). Pages: auth_pages (login, logout), pages_overview (/),
pages_findings (/findings, /findings/{id}, /endpoints/...), api (/api/v1), and engineer B's
pages_cases, pages_scans, pages_admin (owners, opt-outs) and public (about, optout, verify).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from pacswatch import __version__
from pacswatch.store.engine import open_database
from pacswatch.web.api import docs_router
from pacswatch.web.auth import LoginLimiter, LoginRequired, browser_cookie_middleware, login_redirect_target
from pacswatch.web.geoip import CountryReader
from pacswatch.web.queries_overview import OverviewCache
from pacswatch.web.settings import WebSettings
from pacswatch.web.sqlbits import register_sqlite_functions

STATIC = Path(__file__).with_name("static")

# Every module under pacswatch.web with a `router`, in the order they are included.
ROUTER_MODULES = ("auth_pages", "pages_overview", "pages_findings", "api",
                  "pages_cases", "pages_scans", "pages_admin", "public")

# Scripts and styles from this server only (htmx, the chart library and our own files are
# vendored in static/): no inline script, no CDN, no framing by another site.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _router(name: str):
    try:
        module = importlib.import_module(f"pacswatch.web.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"pacswatch.web.{name}":
            raise RuntimeError(f"the dashboard's module pacswatch/web/{name}.py is missing (app.ROUTER_MODULES "
                               "names it); the installation is incomplete") from exc
        raise
    return module.router


def create_app(settings: WebSettings) -> FastAPI:
    # The GeoIP file first: a wrong one is refused before the database is opened.
    geoip = CountryReader(settings.geoip_path) if settings.geoip_path is not None else None
    engine = open_database(settings.database_url)
    engine.dispose()  # connections made from now on get the dashboard's SQL functions
    register_sqlite_functions(engine)
    # The API's schema is at /api/v1/openapi.json and its page at /api/docs (api.py): the page
    # FastAPI builds by default loads Swagger UI from a CDN, which a dashboard must not need.
    app = FastAPI(title="pacswatch", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.settings = settings
    app.state.engine = engine
    app.state.login_limiter = LoginLimiter(settings.login_attempts, settings.login_window_seconds)
    app.state.overview_cache = OverviewCache()
    app.state.geoip = geoip

    app.middleware("http")(browser_cookie_middleware)
    app.middleware("http")(_security_headers)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for name in ROUTER_MODULES:  # the API's schema documents the API, not the pages
        app.include_router(_router(name), include_in_schema=name == "api")
    app.include_router(docs_router)
    app.router.on_shutdown.append(engine.dispose)
    if app.state.geoip is not None:
        app.router.on_shutdown.append(app.state.geoip.close)
    return app


async def _security_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.url.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")  # pages hold what only analysts may see
    return response


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if request.url.path.startswith("/api/v1/"):
        return JSONResponse({"detail": "log in first"}, status_code=401)
    return RedirectResponse(login_redirect_target(exc.next_path), status_code=303)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/v1/") and "text/html" in request.headers.get("accept", "text/html")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not _wants_html(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    from pacswatch.web.templating import render

    return render(request, "error.html", status_code=exc.status_code, status=exc.status_code,
                  detail=str(exc.detail))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Which field was wrong, never the value sent (it may be anything a client typed).
    fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "request" for e in exc.errors()})
    detail = "invalid value for " + ", ".join(fields)
    if not _wants_html(request):
        return JSONResponse({"detail": detail}, status_code=422)
    from pacswatch.web.templating import render

    return render(request, "error.html", status_code=422, status=422, detail=detail)
