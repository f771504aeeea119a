"""One endpoint as a person reads it: its finding, service, latest record (the facts `probe`
prints), owner, case, and a timeline of what the scans saw and what people did."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError
from sqlalchemy import and_, select, update
from sqlalchemy.engine import Connection

from pacswatch.output import report_facts
from pacswatch.record import Record
from pacswatch.store.notify_tables import attributions, case_events, case_services, cases
from pacswatch.store.tables import finding_events, findings, observations, services
from pacswatch.store.web_tables import finding_triage
from pacswatch.web.queries_findings import triage_label

TIMELINE = 100  # entries shown, newest first
OBSERVATIONS = 50

CHANGE_WORDS = {"new": "first seen", "severity": "severity changed", "fixed": "fixed (missed twice)",
                "reopened": "reopened", "opted-out": "closed: the owner opted out"}


@dataclass
class Endpoint:
    ip: str
    port: int
    finding: dict[str, Any] | None = None
    service: dict[str, Any] | None = None
    record: Record | None = None
    facts: list[tuple[str, list[tuple[str, object]]]] = field(default_factory=list)
    owner: dict[str, Any] | None = None
    case: dict[str, Any] | None = None
    triage: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.finding is not None or self.service is not None or bool(self.timeline)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def finding_endpoint(conn: Connection, finding_id: int) -> tuple[str, int] | None:
    row = conn.execute(select(findings.c.ip, findings.c.port).where(findings.c.id == finding_id)).first()
    return (row.ip, row.port) if row is not None else None


def load(conn: Connection, ip: str, port: int, now: datetime) -> Endpoint:
    view = Endpoint(ip, port)
    row = conn.execute(select(findings).where(findings.c.ip == ip, findings.c.port == port)).mappings().first()
    view.finding = dict(row) if row else None
    row = conn.execute(select(services).where(services.c.ip == ip, services.c.port == port)).mappings().first()
    view.service = dict(row) if row else None
    looks = [dict(r) for r in conn.execute(
        select(observations).where(observations.c.ip == ip, observations.c.port == port)
        .order_by(observations.c.scanned_at.desc(), observations.c.id.desc()).limit(OBSERVATIONS)).mappings()]
    # The record to read: the last look that found a service, else the last look at all.
    latest = next((o for o in looks if o["severity"] is not None or o["service"]), looks[0] if looks else None)
    if latest is not None:
        try:
            view.record = Record.model_validate(latest["record"])
            view.facts = report_facts(view.record)
        except ValidationError:
            view.record = None  # a record of an older schema: the timeline still shows its look
    row = conn.execute(select(attributions.c.owner_name, attributions.c.contact, attributions.c.contact_role,
                              attributions.c.confidence, attributions.c.reasons, attributions.c.decided_at)
                       .where(attributions.c.ip == ip)).mappings().first()
    view.owner = dict(row) if row else None
    row = conn.execute(select(cases).join(case_services, case_services.c.case_id == cases.c.id)
                       .where(case_services.c.ip == ip, case_services.c.port == port)).mappings().first()
    view.case = dict(row) if row else None
    view.timeline = _timeline(conn, view, looks, now)
    return view


def _timeline(conn: Connection, view: Endpoint, looks: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for o in looks:
        counts = [f"{o[k]} {k}" for k in ("studies", "patients") if o[k] is not None]
        entries.append({"at": o["scanned_at"], "kind": "look", "scan_id": o["scan_id"], "by": f"scan {o['scan_id']}",
                        "text": ", ".join([o["status"], *(f"severity {o['severity']}",) * bool(o["severity"]),
                                           *counts])})
    if view.finding is not None:
        finding_id = view.finding["id"]
        for e in conn.execute(select(finding_events).where(finding_events.c.finding_id == finding_id)
                              .order_by(finding_events.c.at.desc()).limit(TIMELINE)).mappings():
            text = CHANGE_WORDS.get(e["kind"], e["kind"])
            if e["kind"] == "severity":
                text += f": {e['old_severity']} → {e['new_severity']}"
            elif e["new_severity"]:
                text += f" ({e['new_severity']})"
            entries.append({"at": e["at"], "kind": "change", "by": f"scan {e['scan_id']}" if e["scan_id"] else "",
                            "text": text})
        verdicts = list(conn.execute(select(finding_triage).where(finding_triage.c.finding_id == finding_id)
                                     .order_by(finding_triage.c.at, finding_triage.c.id)))
        for t in verdicts:
            text = {"false-positive": "marked a false positive", "suppressed": "suppressed",
                    "cleared": "verdict cleared", "rescan": "rescan requested", "note": "note"}.get(t.action, t.action)
            if t.until is not None:
                text += f" until {_utc(t.until):%Y-%m-%d}"
            if t.reason:
                text += f": {t.reason}"
            entries.append({"at": t.at, "kind": "person", "by": t.user_name, "text": text})
        standing = [t for t in verdicts if t.action in ("false-positive", "suppressed", "cleared")]
        view.triage = triage_label(standing[-1] if standing else None, now)
    if view.case is not None:
        for e in conn.execute(select(case_events).where(case_events.c.case_id == view.case["id"])
                              .order_by(case_events.c.at.desc()).limit(TIMELINE)).mappings():
            moved = f"{e['from_state'] or '–'} → {e['to_state']}: " if e["to_state"] else ""
            entries.append({"at": e["at"], "kind": f"case {e['kind']}", "by": f"case {view.case['id']}",
                            "text": moved + e["why"]})
    for entry in entries:
        entry["at"] = _utc(entry["at"])
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries[:TIMELINE]


def case_of(conn: Connection, ip: str, port: int) -> int | None:
    """The case the service at ip:port is in, if any."""
    return conn.execute(select(case_services.c.case_id).where(case_services.c.ip == ip,
                                                              case_services.c.port == port)).scalar()


def endpoint_label(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def rescan_now(conn: Connection, ip: str, port: int, now: datetime) -> bool:
    """Make the service due now: the next `pacswatch run` rescans it first (it takes what is due,
    by next_due). False when there is no service to rescan."""
    result = conn.execute(update(services).where(and_(services.c.ip == ip, services.c.port == port))
                          .values(next_due=now))
    return bool(result.rowcount)


def parse_endpoint(text: str) -> tuple[str, int]:
    """'192.0.2.1:104' or '[2001:db8::1]:104' -> (address, port); 404 for anything else."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise HTTPException(status_code=404, detail="no such endpoint: give ADDRESS:PORT") from None
    if not sep or not 0 <= port <= 65535:
        raise HTTPException(status_code=404, detail="no such endpoint: give ADDRESS:PORT")
    return str(address), port
