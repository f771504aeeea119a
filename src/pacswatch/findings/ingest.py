"""What a batch of records does to the database, decided without touching it.

`plan_batch` takes the records of one batch and the current rows of the services and findings
they concern, and returns the rows to insert and update: observations, the latest state per
service, the findings after their lifecycle step, their events and each service's next look.
The repository loads and writes; every decision is made here, in one pure function.

Which records become observations: every one that shows a service (it spoke DICOM or HTTP, or
has a severity) and every one about an endpoint already known as a service (that is how a
service is seen to go away). A refused or silent address that never was a service is counted
in the scan's totals only, unless `keep_all`: an internet-wide scan would otherwise store
millions of rows that say "nothing here".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence, overload

from pacswatch.findings.lifecycle import FindingState, Key, Look, advance
from pacswatch.findings.schedule import RescanPolicy, due_after
from pacswatch.record import Record

Row = dict[str, Any]


def utc(moment: datetime) -> datetime:
    """Aware UTC: SQLite hands datetimes back without their zone."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def exposure_counts(record: Record) -> tuple[int | None, int | None]:
    """(studies, patients) the record counted, from DICOM C-FIND or the web API."""
    if record.dicom is not None and (record.dicom.find.studies is not None or record.dicom.find.patients is not None):
        return record.dicom.find.studies, record.dicom.find.patients
    if record.http is not None:
        return record.http.studies, record.http.patients
    return None, None


_OVERRIDE_COLUMNS = ("deception_override", "override_reason", "override_by", "override_at")
# A new finding's columns that its first look does not set (the deception verdict it does, when exposed).
_NEW_FINDING = dict.fromkeys((*_OVERRIDE_COLUMNS, "deception_verdict", "deception_confidence"))


def speaks(record: Record) -> bool:
    return record.service is not None or record.severity is not None


def observation_row(record: Record, scan_id: int, index: int | None) -> Row:
    studies, patients = exposure_counts(record)
    product = record.product
    return {
        "scan_id": scan_id, "plan_index": index, "ip": record.ip, "port": record.port,
        "transport": record.transport, "status": str(record.status), "service": record.service,
        "severity": None if record.severity is None else str(record.severity),
        "product": product.name[:128] if product else None,
        "product_version": (product.version or "")[:64] or None if product else None,
        "studies": studies, "patients": patients, "scanned_at": utc(record.scanned_at),
        "record": record.model_dump_json(exclude_none=True),  # already JSON: the store passes it through
    }


@overload
def finding_state(row: Row) -> FindingState: ...
@overload
def finding_state(row: None) -> None: ...
def finding_state(row: Row | None) -> FindingState | None:
    if row is None:
        return None
    return FindingState(row["status"], row["severity"], utc(row["first_seen"]), utc(row["last_seen"]),
                        row["fixed_at"] and utc(row["fixed_at"]), row["reopened_at"] and utc(row["reopened_at"]),
                        row["reopen_count"] or 0, row["missed_since"] and utc(row["missed_since"]),
                        row.get("seen_from"))


@dataclass
class BatchPlan:
    observations: list[Row] = field(default_factory=list)
    services_new: list[Row] = field(default_factory=list)  # "_obs": position in observations
    services_changed: list[Row] = field(default_factory=list)  # with "id"
    findings_new: list[Row] = field(default_factory=list)  # "_key"
    findings_changed: list[Row] = field(default_factory=list)  # with "id"
    events: list[Row] = field(default_factory=list)  # "_key" of the finding, "_obs"
    counts: Counter = field(default_factory=Counter)  # records by status


def plan_batch(items: Sequence[tuple[int | None, Record]], services: Mapping[Key, Row], findings: Mapping[Key, Row],
               *, scan_id: int, policy: RescanPolicy, keep_all: bool = False,
               vantage: str | None = None) -> BatchPlan:
    """The writes for `items` given the current `services` and `findings` rows of their endpoints
    (`vantage`: where the records were seen from, lifecycle.counts_as_miss)."""
    plan = BatchPlan()
    svc_rows: dict[Key, Row] = {k: dict(v) for k, v in services.items()}
    new_svc: set[Key] = set()
    touched: set[Key] = set()
    states: dict[Key, FindingState | None] = {k: finding_state(v) for k, v in findings.items()}
    finding_rows: dict[Key, Row] = {k: dict(v) for k, v in findings.items()}
    finding_touched: dict[Key, Row] = {}
    for index, record in items:
        status = str(record.status)
        plan.counts[status] += 1
        key = (record.ip, record.port)
        svc = svc_rows.get(key)
        speaking = speaks(record)
        if not (speaking or svc is not None or keep_all):
            continue
        position = len(plan.observations)
        obs = observation_row(record, scan_id, index)
        plan.observations.append(obs)
        if not speaking and svc is None:
            continue  # kept (keep_all) but not a service: no state to update
        # The look and the service's new values are the observation's, computed there once.
        look = Look(status, obs["severity"], obs["scanned_at"], vantage)
        if svc is None:
            svc = svc_rows[key] = {"ip": record.ip, "port": record.port, "first_seen": look.at,
                                   "last_seen": look.at, "last_checked": look.at}
            new_svc.add(key)
        elif look.at < utc(svc["last_checked"]):
            continue  # an older look than the one the row shows (a resumed old scan)
        svc.update(status=look.status, last_checked=look.at, last_scan_id=scan_id, _obs=position)
        if speaking:
            svc.update(transport=obs["transport"], service=obs["service"], severity=look.severity,
                       product=obs["product"], product_version=obs["product_version"], studies=obs["studies"],
                       patients=obs["patients"], last_seen=look.at)
        elif look.conclusive:
            svc["severity"] = None  # gone; product and counts stay as last seen, for history
        state, events = advance(states.get(key), look, policy.confirm_fixed_after)
        if state is not None and state != states.get(key):
            states[key] = state
            row = finding_rows.get(key)
            if row is None:  # a new finding: an analyst's columns (findings mark) are never set by a look
                row = finding_rows[key] = {"ip": record.ip, "port": record.port, **_NEW_FINDING,
                                           "reasons": list(record.reasons)}
            elif look.severity is not None:
                row["reasons"] = list(record.reasons)
            row.update(status=state.status, severity=state.severity, first_seen=state.first_seen,
                       last_seen=state.last_seen, fixed_at=state.fixed_at, reopened_at=state.reopened_at,
                       reopen_count=state.reopen_count, missed_since=state.missed_since,
                       seen_from=state.seen_from, _obs=position)
            if look.severity is not None:  # the finding's copy of the look's verdict (deception.py)
                deception = record.deception
                row["deception_verdict"] = deception.verdict if deception else None
                row["deception_confidence"] = deception.confidence if deception else None
            finding_touched[key] = row
        for event in events:
            plan.events.append({"_key": key, "_obs": position, "scan_id": scan_id, "at": event.at,
                                "kind": event.kind, "old_severity": event.old_severity,
                                "new_severity": event.new_severity})
        svc["next_due"] = due_after(policy, look.at, look.status, look.severity, states.get(key))
        touched.add(key)
    for key in touched:
        (plan.services_new if key in new_svc else plan.services_changed).append(svc_rows[key])
    for key, row in finding_touched.items():
        if "id" in row:
            plan.findings_changed.append(row)
        else:
            row["_key"] = key
            plan.findings_new.append(row)
    return plan
