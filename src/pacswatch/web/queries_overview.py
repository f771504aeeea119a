"""The overview's numbers, each one aggregate query sized for a large database (bench/web.py:
100,000 findings, 1,000,000 observations): counts now, open findings week by week, what each
recent full scan exposed, fixes per week and the median time to fix, and the top products, ports,
networks and owners of what is exposed now.

"Exposed" is what `pacswatch stats` calls it: an active finding (open or reopened) that is not a
trap (deception verdict at the threshold, or an analyst's 'honeypot') and that no person marked a
false positive or suppressed; those are counted apart (Overview.left_out), as `stats` does. The
status table counts every finding by its lifecycle status. Counts of studies and patients are
sums of counts; nothing else of a data set exists in the store.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.engine import Connection

from pacswatch.deception import DEFAULT_THRESHOLD
from pacswatch.findings.lifecycle import ACTIVE, FIX, NEW, OPT_OUT, REOPEN
from pacswatch.store.notify_tables import attributions
from pacswatch.store.stats import trap_clause
from pacswatch.store.tables import finding_events, findings, observations, scans, services
from pacswatch.store.web_tables import finding_triage, scan_exposure
from pacswatch.web.queries_findings import marked_by_person
from pacswatch.web.sqlbits import day_of, days_between, week_start

SEVERITIES = ("critical", "high", "medium", "low")
TREND_WEEKS = 26
FIX_WEEKS = 12
SCANS_CHARTED = 30
TOP = 10
COUNTRIES = 30


@dataclass
class Overview:
    by_status_severity: dict[tuple[str, str], int] = field(default_factory=dict)  # every finding
    exposed_by_severity: dict[str, int] = field(default_factory=dict)  # active, less what is left out
    left_out: dict[str, int] = field(default_factory=dict)  # active but not exposed: traps, marked by a person
    exposed: dict[str, int] = field(default_factory=dict)  # services, studies, patients
    weekly_open: list[tuple[str, int]] = field(default_factory=list)  # (Monday, active at the week's end)
    per_scan: list[dict[str, Any]] = field(default_factory=list)
    fixes_per_week: list[tuple[str, int]] = field(default_factory=list)
    median_days_to_fix: float | None = None
    fixes_counted: int = 0
    top_products: list[tuple[str, int]] = field(default_factory=list)
    top_ports: list[tuple[int, int]] = field(default_factory=list)
    top_networks: list[tuple[str, int]] = field(default_factory=list)
    top_owners: list[tuple[str, int]] = field(default_factory=list)
    countries: list[tuple[str, int]] = field(default_factory=list)  # with a GeoIP database only
    country_counts: dict[str, int] = field(default_factory=dict)  # every country's, for the map
    country_unknown: int = 0
    to_keep: list[dict[str, Any]] = field(default_factory=list)  # new scan_exposure rows (keep_summaries)
    scans_pending: int = 0  # finished scans not summed yet (SUM_BUDGET): left for the next views

    def status_total(self, status: str) -> int:
        return sum(n for (s, _), n in self.by_status_severity.items() if s == status)

    def active_by_severity(self, severity: str) -> int:
        return sum(n for (s, sev), n in self.by_status_severity.items() if sev == severity and s in ACTIVE)


def data_version(conn: Connection) -> tuple:
    """What changes whenever the overview's numbers may: the newest look, lifecycle event,
    verdict, attribution and scan heartbeat. Each is one index lookup (or a small scan)."""
    return tuple(conn.execute(select(
        select(func.max(observations.c.id)).scalar_subquery(),
        select(func.max(finding_events.c.id)).scalar_subquery(),
        select(func.max(finding_triage.c.id)).scalar_subquery(),
        select(func.max(attributions.c.decided_at)).scalar_subquery(),
        select(func.max(scans.c.updated_at)).scalar_subquery())).one())


def needs_refresh(kept_version: tuple | None, version: tuple, scans_pending: int) -> bool:
    """Whether a kept overview should be computed again (in the background: the page shows the
    kept one meanwhile, with the time it is from): the data changed, or scans are left to sum."""
    return kept_version != version or scans_pending > 0


class OverviewCache:
    """The last overview computed, with the data version it was computed from and when. Its
    aggregates read every active finding (0.3 s at 100,000 findings on an idle SQLite, up to
    1.5 s on a loaded machine), so a page view shows the kept one, and a change in the data
    starts one recomputation in a background thread (`refreshing`) for the views after it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version: tuple | None = None
        self.at: datetime | None = None
        self.view: Overview | None = None
        self.refreshing = False


def monday(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def weeks_back(now: datetime, count: int) -> list[str]:
    """The Mondays of the last `count` weeks, oldest first, as 'YYYY-MM-DD'."""
    this = monday(now)
    return [(this - timedelta(weeks=n)).isoformat() for n in range(count - 1, -1, -1)]


def weekly_active(active_now: int, net_by_week: dict[str, int], weeks: list[str]) -> list[tuple[str, int]]:
    """Active findings at the end of each week, walking back from today's count: a week's end
    count less that week's net change (new + reopened - fixed - opted-out) is the week before's."""
    out: list[tuple[str, int]] = []
    count = active_now
    for week in reversed(weeks):
        out.append((week, count))
        count -= net_by_week.get(week, 0)
    return list(reversed(out))


def load(conn: Connection, now: datetime, country_of: Callable[[str], str | None] | None = None, *,
         threshold: float = DEFAULT_THRESHOLD) -> Overview:
    """The overview; `country_of` (geoip.CountryReader.country_of) adds the countries; `threshold`:
    the deception confidence from which a finding is a trap ([notify] deception_threshold)."""
    dialect = conn.dialect.name
    view = Overview()
    for status, severity, count in conn.execute(
            select(findings.c.status, findings.c.severity, func.count())
            .group_by(findings.c.status, findings.c.severity)):
        view.by_status_severity[(status, severity)] = count

    active = findings.c.status.in_(ACTIVE)
    trap = trap_clause(threshold)
    marked = findings.c.id.in_(marked_by_person("any", now))
    kept_out = trap | marked
    view.exposed_by_severity = {str(sev): int(n) for sev, n in conn.execute(
        select(findings.c.severity, func.count()).where(active & ~kept_out).group_by(findings.c.severity))}
    traps, by_person = conn.execute(select(
        func.count().filter(trap), func.count().filter(~trap & marked)).where(active)).one()
    view.left_out = {"traps": int(traps), "marked by a person": int(by_person)}

    _exposed_now(conn, view, country_of, active & ~kept_out)

    weeks = weeks_back(now, TREND_WEEKS)
    day = day_of(finding_events.c.at, dialect)
    signs = {NEW: 1, REOPEN: 1, FIX: -1, OPT_OUT: -1}
    net: dict[str, int] = {}
    for key, kind, n in conn.execute(
            select(day, finding_events.c.kind, func.count())
            .where(finding_events.c.at >= datetime.combine(date.fromisoformat(weeks[0]), datetime.min.time(),
                                                           tzinfo=now.tzinfo),
                   finding_events.c.kind.in_(tuple(signs)))
            .group_by(day, finding_events.c.kind)):
        week = (date.fromisoformat(key) - timedelta(days=date.fromisoformat(key).weekday())).isoformat()
        net[week] = net.get(week, 0) + signs[kind] * n
    view.weekly_open = weekly_active(sum(view.active_by_severity(s) for s in SEVERITIES), net, weeks)

    view.per_scan, view.to_keep, view.scans_pending = _per_scan(conn, now)

    fix_weeks = weeks_back(now, FIX_WEEKS)
    since = datetime.combine(date.fromisoformat(fix_weeks[0]), datetime.min.time(), tzinfo=now.tzinfo)
    fixed = and_(findings.c.status == "fixed", findings.c.fixed_at >= since)
    fweek = week_start(findings.c.fixed_at, dialect)
    per_week = {str(k): n for k, n in conn.execute(select(fweek, func.count()).where(fixed).group_by(fweek))}
    view.fixes_per_week = [(w, per_week.get(w, 0)) for w in fix_weeks]
    view.fixes_counted = sum(per_week.values())
    if view.fixes_counted:
        days = days_between(findings.c.first_seen, findings.c.fixed_at, dialect)
        view.median_days_to_fix = float(conn.execute(
            select(days).where(fixed).order_by(days).limit(1).offset(view.fixes_counted // 2)).scalar_one())

    return view


def _exposed_now(conn: Connection, view: Overview, country_of: Callable[[str], str | None] | None,
                 exposed: Any) -> None:
    """What is exposed now, and its top products, ports, networks and owners: one read of the
    active findings with their service and owner, counted here (five GROUP BYs over the same
    rows took five times as long on SQLite)."""
    products: Counter[str] = Counter()
    ports: Counter[int] = Counter()
    networks: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    countries: Counter[str | None] = Counter()
    count = studies = patients = 0
    query = (select(findings.c.ip, findings.c.port, services.c.product, services.c.studies, services.c.patients,
                    attributions.c.owner_name).select_from(findings)
             .join(services, and_(services.c.ip == findings.c.ip, services.c.port == findings.c.port), isouter=True)
             .join(attributions, attributions.c.ip == findings.c.ip, isouter=True)
             .where(exposed))
    for ip, port, product, n_studies, n_patients, owner in conn.execute(query):
        count += 1
        studies += n_studies or 0
        patients += n_patients or 0
        products[product or "unknown"] += 1
        ports[port] += 1
        networks[network_label(ip)] += 1
        if owner is not None:
            owners[owner] += 1
        if country_of is not None:
            countries[country_of(ip)] += 1
    view.exposed = {"services": count, "studies": studies, "patients": patients}
    view.top_products = products.most_common(TOP)
    view.top_ports = ports.most_common(TOP)
    view.top_networks = networks.most_common(TOP)
    view.top_owners = owners.most_common(TOP)
    view.country_unknown = countries.pop(None, 0)
    view.country_counts = {str(c): n for c, n in countries.items()}
    view.countries = [(str(c), n) for c, n in countries.most_common(COUNTRIES)]


def network_label(ip: str) -> str:
    """'192.0.2.17' -> '192.0.2.0/24'; an IPv6 address without its last group, with '…'."""
    if "." in ip and ":" not in ip:
        return ip.rpartition(".")[0] + ".0/24"
    return ip.rpartition(":")[0] + ":…"


SUM_BUDGET = 0.25  # seconds of one page view spent summing scans not summed yet


def _per_scan(conn: Connection, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """What each of the last SCANS_CHARTED full scans (kind 'scan', not the rescans of what was
    due) exposed: services with a severity, their studies and patients. A finished scan's sums
    are to be kept in scan_exposure (the second list; keep_summaries writes them, so the page
    reads in a read transaction); a running one is summed each time. Summing a scan of 100,000
    endpoints takes about a second: one view spends at most SUM_BUDGET on it, newest scans
    first, and the page says how many are left for the next views."""
    recent = conn.execute(select(scans.c.id, scans.c.created_at, scans.c.status).where(scans.c.kind == "scan")
                          .order_by(scans.c.id.desc()).limit(SCANS_CHARTED)).all()
    ids = [r.id for r in recent]
    kept = {r.scan_id: r for r in conn.execute(select(scan_exposure).where(scan_exposure.c.scan_id.in_(ids)))}
    started = time.perf_counter()
    out, to_keep, pending = [], [], 0
    for row in recent:  # newest first: the budget goes to what is most recent
        summary = kept.get(row.id)
        if summary is not None:
            services_n, studies, patients = summary.services, summary.studies, summary.patients
        elif time.perf_counter() - started > SUM_BUDGET:
            pending += 1
            continue
        else:
            services_n, studies, patients = _sum_scan(conn, row.id)
            if row.status == "finished":
                to_keep.append({"scan_id": row.id, "services": services_n, "studies": studies,
                                "patients": patients, "computed_at": now})
        out.append({"scan": row.id, "at": row.created_at, "services": services_n, "studies": studies,
                    "patients": patients})
    return list(reversed(out)), to_keep, pending


def keep_summaries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Store the finished scans' sums that load() computed (another request may have won)."""
    have = set(conn.execute(select(scan_exposure.c.scan_id)
                            .where(scan_exposure.c.scan_id.in_([r["scan_id"] for r in rows]))).scalars())
    new = [r for r in rows if r["scan_id"] not in have]
    if new:
        conn.execute(insert(scan_exposure), new)


def _sum_scan(conn: Connection, scan_id: int) -> tuple[int, int, int]:
    # One row per endpoint (a resumed scan may have looked twice), then sums, as `stats` does.
    per_endpoint = (select(observations.c.ip, observations.c.port,
                           func.max(observations.c.studies).label("studies"),
                           func.max(observations.c.patients).label("patients"))
                    .where(observations.c.scan_id == scan_id, observations.c.severity.is_not(None))
                    .group_by(observations.c.ip, observations.c.port).subquery())
    count, studies, patients = conn.execute(select(func.count(), func.coalesce(func.sum(per_endpoint.c.studies), 0),
                                                   func.coalesce(func.sum(per_endpoint.c.patients), 0))).one()
    return int(count), int(studies), int(patients)
