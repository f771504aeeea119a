"""/ : the overview. Counts by severity and status now, open findings week by week, what the
recent full scans exposed (services, studies, patients: counts only), fixes per week and the
median time to fix, the top products, ports, networks and owners of what is exposed now.

The charts are drawn by static/overview.js (uPlot) from the same numbers the tables show: the
page reads without JavaScript. A country map needs a GeoIP database (--geoip FILE.mmdb); the
page says so when there is none, and the map itself is not built yet (it says that too).
"""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Request

from pacswatch.web.auth import CurrentUser, settings_of
from pacswatch.web.db import reading, writing
from pacswatch.web.queries_overview import (
    SEVERITIES,
    Overview,
    OverviewCache,
    data_version,
    fresh_enough,
    keep_summaries,
    load,
)
from pacswatch.web.templating import render

router = APIRouter()


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


def current_view(request: Request) -> tuple[Overview, datetime]:
    settings = settings_of(request)
    engine = request.app.state.engine
    cache: OverviewCache = request.app.state.overview_cache
    now = settings.clock()
    with reading(engine) as conn:
        version = data_version(conn)
        with cache.lock:
            kept, kept_at = cache.view, cache.at
            if kept is not None and kept_at is not None and not kept.scans_pending \
                    and fresh_enough(cache.version, kept_at, version, now):
                return kept, kept_at
        view = load(conn, now)
    if view.to_keep:
        with writing(engine) as conn:
            keep_summaries(conn, view.to_keep)
        view.to_keep = []
    with cache.lock:
        cache.version, cache.at, cache.view = version, now, view
    return view, now


@router.get("/")
def overview(request: Request, user: CurrentUser):
    view, as_of = current_view(request)
    return render(request, "overview.html", user=user, view=view, severities=SEVERITIES, as_of=as_of,
                  chart_json=chart_data(view), geoip=settings_of(request).geoip_path,
                  statuses=("open", "reopened", "fixed", "opted-out"))
