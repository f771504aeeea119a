"""/ : the overview. Counts by severity and status now, open findings week by week, what the
recent full scans exposed (services, studies, patients: counts only), fixes per week and the
median time to fix, the top products, ports, networks and owners of what is exposed now.

The charts are drawn by static/overview.js (uPlot) from the same numbers the tables show: the
page reads without JavaScript. With a GeoIP database (--geoip FILE.mmdb) the exposed services
are counted by country, on a map drawn here as SVG (worldmap.py) and in a table; without one the
page says what is missing.

The aggregates are kept (app.state.overview_cache): a view shows the kept overview with the time
it is from, and a change in the data (queries_overview.data_version) starts one recomputation
in a background thread for the views after it. Only the first view after the server starts
computes it while the browser waits.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy.engine import Engine

from pacswatch.deception import DEFAULT_THRESHOLD
from pacswatch.notify import config as configuration
from pacswatch.web.auth import CurrentUser, settings_of
from pacswatch.web.db import reading, writing
from pacswatch.web.geoip import CountryReader
from pacswatch.web.worldmap import shaded, viewbox
from pacswatch.web.queries_overview import (
    SEVERITIES,
    Overview,
    OverviewCache,
    data_version,
    needs_refresh,
    keep_summaries,
    load,
)
from pacswatch.web.settings import WebSettings
from pacswatch.web.templating import render

router = APIRouter()
log = logging.getLogger(__name__)


def chart_data(view: Overview) -> str:
    """The charts' series as JSON for a <script type="application/json"> block: numbers and
    dates only, and json.dumps escapes nothing HTML needs, so '<' is escaped by hand."""
    data = {
        "weekly": {"weeks": [w for w, _ in view.weekly_open], "open": [n for _, n in view.weekly_open]},
        "scans": {"at": [int(s["at"].timestamp()) for s in view.per_scan],
                  "services": [s["services"] for s in view.per_scan],
                  "studies": [s["studies"] for s in view.per_scan],
                  "patients": [s["patients"] for s in view.per_scan]},
        "fixes": {"weeks": [w for w, _ in view.fixes_per_week], "fixed": [n for _, n in view.fixes_per_week]},
    }
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def compute(engine: Engine, cache: OverviewCache, clock: Callable[[], datetime],
            geoip: CountryReader | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
    """Compute the overview and keep it (with the finished scans' sums it made)."""
    now = clock()
    try:
        with reading(engine) as conn:
            version = data_version(conn) + (threshold,)  # a new threshold counts anew
            view = load(conn, now, geoip.country_of if geoip is not None else None, threshold=threshold)
        if view.to_keep:
            with writing(engine) as conn:
                keep_summaries(conn, view.to_keep)
            view.to_keep = []
        with cache.lock:
            cache.version, cache.at, cache.view = version, now, view
    finally:
        with cache.lock:
            cache.refreshing = False


def trap_threshold(settings: WebSettings) -> float:
    """[notify] deception_threshold of the configuration the dashboard was started with, read
    at each computation (as the cases pages read it), so that the overview counts traps as
    `stats` and `notify` do; the default when there is none or it does not load (logged)."""
    if settings.notify_config is None:
        return DEFAULT_THRESHOLD
    try:
        return configuration.load(str(settings.notify_config)).settings.deception_threshold
    except (OSError, ValueError) as exc:
        log.warning("the overview counts traps at the default threshold: %s", exc)
        return DEFAULT_THRESHOLD


def _refresh(engine: Engine, cache: OverviewCache, clock: Callable[[], datetime],
             geoip: CountryReader | None, threshold: float) -> None:
    try:
        compute(engine, cache, clock, geoip, threshold)
    except Exception:  # a background thread: the next view tries again, the log says why
        log.exception("recomputing the overview failed")


def current_view(request: Request) -> tuple[Overview, datetime]:
    """The kept overview, refreshed in the background when the data changed; computed now
    only when there is none yet (the first view after the server started)."""
    clock = settings_of(request).clock
    engine = request.app.state.engine
    cache: OverviewCache = request.app.state.overview_cache
    geoip: CountryReader | None = request.app.state.geoip
    threshold = trap_threshold(settings_of(request))
    with reading(engine) as conn:
        version = data_version(conn) + (threshold,)
    with cache.lock:
        kept, kept_at = cache.view, cache.at
        if kept is not None and kept_at is not None:
            if needs_refresh(cache.version, version, kept.scans_pending) and not cache.refreshing:
                cache.refreshing = True
                threading.Thread(target=_refresh, args=(engine, cache, clock, geoip, threshold), name="overview-refresh",
                                 daemon=True).start()
            return kept, kept_at
    compute(engine, cache, clock, geoip, threshold)
    with cache.lock:
        if cache.view is None or cache.at is None:
            raise RuntimeError("the overview was not computed")
        return cache.view, cache.at


@router.get("/")
def overview(request: Request, user: CurrentUser):
    view, as_of = current_view(request)
    return render(request, "overview.html", user=user, view=view, severities=SEVERITIES, as_of=as_of,
                  chart_json=chart_data(view), geoip=request.app.state.geoip,
                  world=shaded(view.country_counts) if request.app.state.geoip is not None else None,
                  world_viewbox=viewbox(),
                  statuses=("open", "reopened", "fixed", "opted-out"))
