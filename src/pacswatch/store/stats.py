"""`pacswatch stats`: exposure now and over time, from the store's tables (one read).

An opted-out finding, a trap (deception.py: a verdict at the threshold, or an analyst's
'honeypot') and a finding a person marked a false positive or suppressed (findings/triage.py)
are counted apart, never as exposures. Kept apart from the repository, which calls it."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from pacswatch.store.tables import findings, observations, scans, services


def trap_clause(threshold: float) -> ColumnElement[bool]:
    """A finding that is a trap: an analyst's 'honeypot', or, without an analyst's word, a
    deception verdict at `threshold` or above (the SQL form of deception.is_trap, for counts;
    tests/test_deception.py checks the two agree)."""
    override = func.coalesce(findings.c.deception_override, "")  # never NULL: ~trap must be true or false
    return (override == "honeypot") | ((override == "") & findings.c.deception_verdict.is_not(None)
                                       & (func.coalesce(findings.c.deception_confidence, 0.0) >= threshold))


def exposure_stats(conn: Connection, holding: dict[int, str], *, history: int, threshold: float) -> dict[str, Any]:
    """The stats of `pacswatch stats`. `holding`: finding id -> the person's verdict in force."""
    # An opted-out service is no longer the campaign's to count as exposed (its owner asked
    # to be left alone; it is not rescanned): it is counted apart, in findings_by_status.
    # So is a trap (deception.py: a verdict at the threshold, or an analyst's 'honeypot'):
    # counted in traps_by_verdict, not as an exposure.
    trap = trap_clause(threshold)
    # And so is a finding a person marked a false positive or suppressed (findings/triage.py):
    # counted in triaged_by_verdict.
    triaged = findings.c.id.in_(sorted(holding))
    left_out = (select(findings.c.id).where(findings.c.ip == services.c.ip, findings.c.port == services.c.port,
                                            (findings.c.status == "opted-out") | trap | triaged).exists())
    exposed = services.c.severity.is_not(None) & ~left_out
    active = findings.c.status.in_(("open", "reopened"))
    def pairs(query) -> dict:
        return {str(k): int(v) for k, v in conn.execute(query).all()}

    out: dict[str, Any] = {
        "findings_by_severity": pairs(select(findings.c.severity, func.count()).where(active & ~trap & ~triaged)
                                      .group_by(findings.c.severity)),
        "triaged_by_verdict": dict(sorted(Counter(holding[i] for i in conn.execute(
            select(findings.c.id).where(active & ~trap & triaged)).scalars()).items())),
        "traps_by_verdict": pairs(select(func.coalesce(findings.c.deception_override,
                                                       findings.c.deception_verdict), func.count())
                                  .where(active & trap).group_by(func.coalesce(
                                      findings.c.deception_override, findings.c.deception_verdict))),
        "findings_by_status": pairs(select(findings.c.status, func.count()).group_by(findings.c.status)),
        "exposed_by_product": {("unknown" if k == "None" else k): v for k, v in pairs(
            select(services.c.product, func.count()).where(exposed).group_by(services.c.product)).items()},
        "exposed_by_port": pairs(select(services.c.port, func.count()).where(exposed)
                                 .group_by(services.c.port)),
    }
    studies, patients, count = conn.execute(select(
        func.coalesce(func.sum(services.c.studies), 0), func.coalesce(func.sum(services.c.patients), 0),
        func.count()).where(exposed)).one()
    out["now"] = {"exposed_services": int(count), "studies": int(studies), "patients": int(patients)}
    # Per scan: one row per endpoint (a resumed scan may have looked twice), then sums.
    per_endpoint = (select(observations.c.scan_id, observations.c.ip, observations.c.port,
                           func.max(observations.c.studies).label("studies"),
                           func.max(observations.c.patients).label("patients"))
                    .where(observations.c.severity.is_not(None))
                    .group_by(observations.c.scan_id, observations.c.ip, observations.c.port).subquery())
    recent = select(scans.c.id).order_by(scans.c.id.desc()).limit(history).scalar_subquery()
    rows = conn.execute(
        select(scans.c.id, scans.c.created_at, scans.c.kind, func.count(per_endpoint.c.ip),
               func.coalesce(func.sum(per_endpoint.c.studies), 0),
               func.coalesce(func.sum(per_endpoint.c.patients), 0))
        .join(per_endpoint, per_endpoint.c.scan_id == scans.c.id, isouter=True)
        .where(scans.c.id.in_(recent)).group_by(scans.c.id, scans.c.created_at, scans.c.kind)
        .order_by(scans.c.id)).all()
    out["over_time"] = [{"scan": r[0], "at": _utc(r[1]), "kind": r[2], "exposed_services": r[3],
                         "studies": int(r[4]), "patients": int(r[5])} for r in rows]
    return out


def _utc(moment: datetime) -> datetime:
    """SQLite returns datetimes without their zone; everything stored is UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
