"""When to look at a service again: a pure function of its severity and history.

In the spirit of CISA's Cyber Hygiene scheduler (cisagov/cyhy-core `cyhy/db/scheduler.py`):
critical every 12 hours, high every 24 hours, medium every 4 days, low every 6 days, an up host
without findings every 7 days, a down host every 90 days. Here "nothing open" (a service that
went away, or answers without exposing anything) is looked at every 90 days, as the issue asks,
and a finding fixed within the last 30 days is checked weekly, the role cyhy's priority decay
plays: fixes get rolled back (a restored VM, a re-enabled port forward).

A finding that one scan missed is looked at again when its miss can be confirmed
(`missed_since + confirm_fixed_after`, findings/lifecycle.py), if that comes before its pace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Iterable, Mapping

from pacswatch.findings.lifecycle import ACTIVE, CONFIRM_FIXED_AFTER, INCONCLUSIVE, FindingState

DEFAULT_INTERVALS: Mapping[str, timedelta] = MappingProxyType({
    "critical": timedelta(hours=12),
    "high": timedelta(hours=24),
    "medium": timedelta(days=4),
    "low": timedelta(days=6),
    "fixed": timedelta(days=7),  # a finding fixed within `fixed_window`
    "none": timedelta(days=90),  # nothing open
})
CLASSES = tuple(DEFAULT_INTERVALS)
POLICY_SETTING = "rescan_policy"  # the database's settings entry: the policy that scheduled its services
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '12h', '4d', '2w' -> timedelta; ValueError otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h, 4d or 2w")
    value = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if value <= timedelta(0):
        raise ValueError(f"{text!r}: a rescan interval must be longer than zero")
    return value


def parse_confirm_after(text: str) -> timedelta:
    """--confirm-fixed-after: a duration like 6h or 30m, or 0 (any later second miss fixes)."""
    if text.strip() in ("0", "0s", "0m", "0h", "0d"):
        return timedelta(0)
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 6h, 30m or 0") from None


@dataclass(frozen=True)
class RescanPolicy:
    intervals: Mapping[str, timedelta] = field(default_factory=lambda: DEFAULT_INTERVALS)
    fixed_window: timedelta = timedelta(days=30)
    # The lifecycle's rule, carried here because the policy travels with every batch to ingest.
    confirm_fixed_after: timedelta = CONFIRM_FIXED_AFTER

    @classmethod
    def from_overrides(cls, items: Iterable[str], confirm_fixed_after: timedelta = CONFIRM_FIXED_AFTER,
                       ) -> "RescanPolicy":
        """From `critical=6h`-style items over the defaults (`pacswatch run --interval`)."""
        intervals = dict(DEFAULT_INTERVALS)
        for item in items:
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if not eq or name not in intervals:
                raise ValueError(f"--interval takes CLASS=DURATION with CLASS one of {', '.join(CLASSES)}: {item!r}")
            intervals[name] = parse_duration(value)
        return cls(MappingProxyType(intervals), confirm_fixed_after=confirm_fixed_after)

    def to_json(self) -> dict:
        """What the database keeps of it (settings "rescan_policy"), in seconds."""
        return {"intervals": {k: v.total_seconds() for k, v in self.intervals.items()},
                "fixed_window": self.fixed_window.total_seconds(),
                "confirm_fixed_after": self.confirm_fixed_after.total_seconds()}

    @classmethod
    def from_json(cls, value: Mapping | None, confirm_fixed_after: timedelta | None = None) -> "RescanPolicy":
        """The policy `to_json` kept (the defaults for None or a class it lacks); with
        `confirm_fixed_after`, that wait instead of the kept one."""
        value = value or {}
        intervals = dict(DEFAULT_INTERVALS)
        intervals.update({k: timedelta(seconds=v) for k, v in (value.get("intervals") or {}).items()
                          if k in intervals})
        window = timedelta(seconds=value["fixed_window"]) if "fixed_window" in value else cls.fixed_window
        if confirm_fixed_after is None:
            confirm_fixed_after = timedelta(seconds=value.get("confirm_fixed_after",
                                                              CONFIRM_FIXED_AFTER.total_seconds()))
        return cls(MappingProxyType(intervals), window, confirm_fixed_after)

    def interval(self, severity: str | None, finding_status: str | None = None,
                 finding_severity: str | None = None, fixed_at: datetime | None = None,
                 now: datetime | None = None) -> timedelta:
        """The wait before the next look, from what the last look and the finding say."""
        if severity is not None:
            return self.intervals[severity]
        if finding_status in ACTIVE and finding_severity:
            # The last look proved nothing (an io-timeout, say): keep the finding's pace.
            return self.intervals[finding_severity]
        if finding_status == "fixed" and fixed_at is not None and now is not None \
                and now - fixed_at <= self.fixed_window:
            return self.intervals["fixed"]
        return self.intervals["none"]

    def next_due(self, checked_at: datetime, severity: str | None, finding_status: str | None = None,
                 finding_severity: str | None = None, fixed_at: datetime | None = None,
                 missed_since: datetime | None = None) -> datetime:
        paced = checked_at + self.interval(severity, finding_status, finding_severity, fixed_at, checked_at)
        if missed_since is not None:
            confirm = missed_since + self.confirm_fixed_after
            # Not when it is already past: then this look was not the one to confirm (it proved
            # nothing), and an immediate rescan would only repeat it; the pace decides.
            if confirm >= checked_at:
                return min(confirm, paced)
        return paced


def due_after(policy: RescanPolicy, checked_at: datetime, status: str, severity: str | None,
              finding: FindingState | None) -> datetime:
    """When to look again at a service whose last look (at `checked_at`) had `status` and
    `severity`, its finding now being `finding`. Ingest sets it after each look; `run` sets it
    again for every service when the intervals it is given differ from those that set it."""
    if status == "blocked":  # opted out or out of scope: not worth a rescan soon
        return checked_at + policy.intervals["none"]
    if finding is None:
        return policy.next_due(checked_at, severity if status not in INCONCLUSIVE else None)
    return policy.next_due(checked_at, severity if status not in INCONCLUSIVE else None, finding.status,
                           finding.severity, finding.fixed_at, finding.missed_since)


def due(next_due: datetime, now: datetime) -> bool:
    return next_due <= now
