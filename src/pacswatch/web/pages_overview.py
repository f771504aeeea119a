"""/ : the overview. Counts by severity and status now, open findings week by week, what the
recent full scans exposed (services, studies, patients: counts only), fixes per week and the
median time to fix, the top products, ports, networks and owners of what is exposed now.

The charts are drawn by static/overview.js (uPlot) from the same numbers the tables show: the
page reads without JavaScript. A country map needs a GeoIP database (--geoip FILE.mmdb); the
page says so when there is none, and the map itself is not built yet (it says that too).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from pacswatch.web.auth import CurrentUser, settings_of
from pacswatch.web.db import reading, writing
from pacswatch.web.queries_overview import SEVERITIES, Overview, keep_summaries, load
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


@router.get("/")
def overview(request: Request, user: CurrentUser):
    settings = settings_of(request)
    engine = request.app.state.engine
    with reading(engine) as conn:
        view = load(conn, settings.clock())
    if view.to_keep:
        with writing(engine) as conn:
            keep_summaries(conn, view.to_keep)
    geoip = settings.geoip_path
    return render(request, "overview.html", user=user, view=view, severities=SEVERITIES,
                  chart_json=chart_data(view), geoip=geoip,
                  statuses=("open", "reopened", "fixed", "opted-out"))
