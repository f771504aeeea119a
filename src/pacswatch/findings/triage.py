"""What a person's verdict on a finding (the dashboard's "false positive" and "suppress until a
date", kept in the table finding_triage) does to the campaign: pure decisions.

A finding marked a false positive is named in no notice and counted apart, but still rescanned,
so that a change is seen. A finding suppressed until a date is neither notified nor rescanned
until that date; from then on it is an ordinary finding again. 'cleared' ends either.
Only the latest of a finding's standing verdicts counts; notes and rescan requests are history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

FALSE_POSITIVE = "false-positive"
SUPPRESSED = "suppressed"
CLEARED = "cleared"
STANDING = (FALSE_POSITIVE, SUPPRESSED, CLEARED)


@dataclass(frozen=True)
class Verdict:
    finding_id: int
    action: str  # one of STANDING
    at: datetime
    by: str
    until: datetime | None = None  # for a suppression: the end (None: until cleared)
    reason: str | None = None
    ip: str | None = None  # the finding's service
    port: int | None = None


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def standing(rows: Iterable[Mapping[str, Any]]) -> dict[int, Verdict]:
    """finding id -> its latest standing verdict, from finding_triage rows in (at, id) order."""
    latest: dict[int, Verdict] = {}
    for r in rows:
        if r["action"] in STANDING:
            latest[int(r["finding_id"])] = Verdict(int(r["finding_id"]), r["action"], _utc(r["at"]) or r["at"],
                                                   r["user_name"], _utc(r.get("until")), r.get("reason"),
                                                   r.get("ip"), r.get("port"))
    return latest


def in_force(verdict: Verdict | None, now: datetime) -> str | None:
    """'false-positive' or 'suppressed' when the verdict holds at `now`, else None (no verdict,
    cleared, or a suppression whose date has passed)."""
    if verdict is None or verdict.action == CLEARED:
        return None
    if verdict.action == SUPPRESSED and verdict.until is not None and verdict.until <= now:
        return None
    return verdict.action


def why_left_out(verdict: Verdict | None, now: datetime) -> str | None:
    """Why a notice may not name the finding, in a sentence, or None when it may."""
    holds = in_force(verdict, now)
    if holds is None or verdict is None:
        return None
    reason = f": {verdict.reason}" if verdict.reason else ""
    if holds == FALSE_POSITIVE:
        return f"marked a false positive by {verdict.by} on {verdict.at:%Y-%m-%d}{reason}"
    until = f" until {verdict.until:%Y-%m-%d %H:%M} UTC" if verdict.until is not None else " until cleared"
    return f"suppressed{until} by {verdict.by}{reason}"


def held_until(verdict: Verdict | None, now: datetime) -> datetime | None:
    """Until when `run` leaves the finding's service alone: a suppression's date while it holds
    (datetime.max for one without a date), else None. A false positive is rescanned as usual."""
    if in_force(verdict, now) != SUPPRESSED or verdict is None:
        return None
    return verdict.until or datetime.max.replace(tzinfo=timezone.utc)


def split_triaged(findings: Iterable[dict[str, Any]], verdicts: Mapping[int, Verdict], now: datetime
                  ) -> tuple[list[dict[str, Any]], list[tuple[str, int, str, str]]]:
    """Findings (Repository.findings() rows) to notify, and those a person's verdict leaves out,
    each as (ip, port, 'false-positive' | 'suppressed', why)."""
    kept, left_out = [], []
    for f in findings:
        verdict = verdicts.get(int(f["id"]))
        why = why_left_out(verdict, now)
        if why is None or verdict is None:
            kept.append(f)
        else:
            left_out.append((f["ip"], int(f["port"]), verdict.action, why))
    return kept, left_out


def held_services(verdicts: Mapping[int, Verdict], now: datetime) -> dict[tuple[str, int], datetime]:
    """(ip, port) -> until when `run` may not rescan it, for the findings a suppression holds."""
    held = {}
    for v in verdicts.values():
        until = held_until(v, now)
        if until is not None and v.ip is not None and v.port is not None:
            held[(v.ip, int(v.port))] = until
    return held
