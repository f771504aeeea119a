"""The finding lifecycle and the differences between scans, as pure functions.

A finding is an exposure at one endpoint (address and port): it opens the first time a record
there has a severity, becomes `fixed` when later looks find nothing exposed, `reopened` when
it comes back, and keeps its first sighting throughout (cisagov/cyhy-core's ticket manager
works the same way: one ticket per exposure, reopened rather than duplicated).

One miss does not fix a finding: a scan run while a site's link or a lab was down would close
every finding there, critical ones included, and the owner's case with them. The first look
that finds nothing exposed sets `missed_since` (an event `missed`, the finding stays open); a
second miss at least `confirm_fixed_after` later fixes it; a sighting in between clears the
miss (an event `seen-again`). With `confirm_fixed_after` zero, any later second miss fixes it.

What counts as "a look": a record whose status proves something about the endpoint. `blocked`
(we did not look), `error` (our own bug) and `io-timeout` (something accepted the connection
and then said nothing: an overloaded archive as often as a tarpit) prove nothing, so they never
fix or change a finding. A refused or timed-out connection does: the service is gone, or
firewalled, which is what the owner was asked to do.

Several vantages (distributed scans from several places, README "Distributed scans"): a
service that a firewall lets through from vantage A and not from B would be seen by A's scans
and missed by B's, and flip between open and fixed with every pair of scans. So a finding remembers the
vantages that have seen it exposed (`seen_from`; "" is a scan that names no vantage), and a
look that finds nothing counts as a miss only from one of them (`counts_as_miss`): the finding
is confirmed fixed only by two misses from places that saw it open. A look from elsewhere is
history (an observation), not a lifecycle step; a sighting from anywhere is one. A finding
stored before vantages were kept (`seen_from` None) counts every miss, as it always did.

An owner who joins the opt-out list closes their active findings as `opted-out` (`opt_out`):
the scan no longer contacts them, so their state would otherwise stay `open` forever, and
notices would keep counting them. Scans of an opted-out address are `blocked` (inconclusive),
so nothing reopens such a finding while the opt-out stands; once it is lifted, a look that
finds the exposure again reopens it like a fixed one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

OPEN, FIXED, REOPENED, OPTED_OUT = "open", "fixed", "reopened", "opted-out"
STATUSES = (OPEN, FIXED, REOPENED, OPTED_OUT)
ACTIVE = (OPEN, REOPENED)  # exposed as far as we know; the others are closed
# Event kinds.
NEW, SEVERITY, FIX, REOPEN, OPT_OUT = "new", "severity", "fixed", "reopened", "opted-out"
MISS, SEEN_AGAIN = "missed", "seen-again"
# The default wait between the miss that starts a confirmation and the one that fixes: long
# enough for a restarted server or a restored link, shorter than the critical rescan interval.
CONFIRM_FIXED_AFTER = timedelta(hours=6)
INCONCLUSIVE = frozenset({"blocked", "error", "io-timeout"})
SEVERITY_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1}
UNNAMED = ""  # the vantage of a scan that names none (a local scan, workers without --vantage)

Key = tuple[str, int]  # (ip, port)


@dataclass(frozen=True)
class FindingState:
    status: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    fixed_at: datetime | None = None
    reopened_at: datetime | None = None
    reopen_count: int = 0
    missed_since: datetime | None = None  # active, and a look since then found nothing exposed
    # Vantages that saw it exposed, sorted, comma-separated ("" a scan naming none); None: not
    # known (older). Text, not a set: a container per finding makes ingest's garbage collector
    # walk every record of the batch more often (+40% CPU measured).
    seen_from: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def changed_at(self) -> datetime:
        """The latest moment this state records: older looks cannot overrule it."""
        return max(self.last_seen, self.fixed_at or self.last_seen, self.missed_since or self.last_seen)


@dataclass(frozen=True)
class Look:
    """What one record says about its endpoint, reduced to what the lifecycle decides on."""

    status: str
    severity: str | None
    at: datetime
    vantage: str | None = None  # where it was seen from; None: a scan that names no vantage

    @property
    def conclusive(self) -> bool:
        return self.status not in INCONCLUSIVE


@dataclass(frozen=True)
class Event:
    kind: str
    old_severity: str | None
    new_severity: str | None
    at: datetime


def counts_as_miss(seen_from: str | None, vantage: str | None) -> bool:
    """Whether a look from `vantage` that finds nothing exposed is a miss of a finding seen
    exposed from `seen_from`: only from a place that saw it (vantage flapping, above); every
    look counts for a finding from before vantages were kept (None)."""
    return seen_from is None or (vantage or UNNAMED) in seen_from.split(",")


def seen_also_from(seen_from: str | None, vantage: str | None) -> str:
    """`seen_from` with `vantage` added (vantage names hold no comma: distributed/app.py)."""
    place = vantage or UNNAMED
    if seen_from is None:
        return place
    names = seen_from.split(",")
    return seen_from if place in names else ",".join(sorted([*names, place]))


def advance(state: FindingState | None, look: Look, confirm_fixed_after: timedelta = CONFIRM_FIXED_AFTER,
            ) -> tuple[FindingState | None, tuple[Event, ...]]:
    """The finding after `look`, and what happened to it (nothing, new, severity, missed, fixed,
    seen-again, reopened). A finding is fixed by the second of two misses with no sighting
    between them, the second at least `confirm_fixed_after` after the first."""
    if not look.conclusive and look.severity is None:
        return state, ()
    if state is not None and look.at < state.changed_at:
        return state, ()  # an older look (a resumed old scan) must not undo a newer one
    sev = look.severity
    if state is None:
        if sev is None:
            return None, ()
        return (FindingState(OPEN, sev, look.at, look.at, seen_from=look.vantage or UNNAMED),
                (Event(NEW, None, sev, look.at),))
    if sev is None:
        if not state.active or not counts_as_miss(state.seen_from, look.vantage):
            return state, ()
        if state.missed_since is None:
            return replace(state, missed_since=look.at), (Event(MISS, state.severity, None, look.at),)
        # Strictly later: the same moment again is the same look (a batch's duplicate), not a second.
        if look.at > state.missed_since and look.at - state.missed_since >= confirm_fixed_after:
            fixed = replace(state, status=FIXED, fixed_at=look.at, missed_since=None)
            return fixed, (Event(FIX, state.severity, None, look.at),)
        return state, ()  # missed again, too soon to confirm: the confirmation rescan will tell
    seen_from = seen_also_from(state.seen_from, look.vantage)
    if seen_from != state.seen_from:
        state = replace(state, seen_from=seen_from)
    if not state.active:  # fixed, or opted out and since lifted (a standing opt-out is never looked at)
        reopened = replace(state, status=REOPENED, severity=sev, last_seen=look.at, fixed_at=None,
                           reopened_at=look.at, reopen_count=state.reopen_count + 1)
        return reopened, (Event(REOPEN, state.severity, sev, look.at),)
    events: tuple[Event, ...] = ()
    if state.missed_since is not None:
        events += (Event(SEEN_AGAIN, state.severity, sev, look.at),)
    if sev != state.severity:
        events += (Event(SEVERITY, state.severity, sev, look.at),)
    return replace(state, severity=sev, last_seen=look.at, missed_since=None), events


def opt_out(state: FindingState, at: datetime) -> tuple[FindingState, tuple[Event, ...]]:
    """The finding closed because its owner opted out at `at` (fixed_at holds the closing
    moment, so an older look cannot undo it); a closed finding is left as it is."""
    if not state.active:
        return state, ()
    fixed_at = max(at, state.changed_at)
    closed = replace(state, status=OPTED_OUT, fixed_at=fixed_at, missed_since=None)
    return closed, (Event(OPT_OUT, state.severity, None, fixed_at),)


@dataclass(frozen=True)
class ChangeSummary:
    """What changed in one scan, counted for the end-of-scan summary."""

    new: int = 0
    fixed: int = 0
    reopened: int = 0
    raised: int = 0
    lowered: int = 0
    missed: int = 0  # open findings a look missed once (not fixed yet)
    seen_again: int = 0  # missed ones seen again before a second miss

    @property
    def total(self) -> int:
        return self.new + self.fixed + self.reopened + self.raised + self.lowered + self.missed + self.seen_again


def summarize(kinds: Iterable[tuple[str, str | None, str | None]]) -> ChangeSummary:
    """Count (kind, old severity, new severity) events; a severity change is raised or lowered."""
    counts: Counter = Counter()
    for kind, old, new in kinds:
        if kind == SEVERITY:
            up = SEVERITY_RANK.get(new or "", 0) > SEVERITY_RANK.get(old or "", 0)
            counts["raised" if up else "lowered"] += 1
        elif kind in (NEW, FIX, REOPEN, MISS, SEEN_AGAIN):
            counts[kind] += 1
    return ChangeSummary(counts[NEW], counts[FIX], counts[REOPEN], counts["raised"], counts["lowered"],
                         counts[MISS], counts[SEEN_AGAIN])


def span_text(delta: timedelta) -> str:
    """A duration for people: '45 s', '30 min', '6 h', '6 h 30 min', '3 d'."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{seconds // 86400} d"


# An analyst's override of the deception verdict (cli/deception.py, Repository.mark_finding).
MARKED = {"marked-real": "marked real", "marked-honeypot": "marked a honeypot"}


def explain(events: Iterable[Mapping]) -> list[str]:
    """Why each event of one finding happened, in words, for `pacswatch history`.

    `events` are one finding's rows in time order, with kind, at, scan_id, old_severity,
    new_severity and `look_status` (the status of the observation behind it, if any)."""
    out: list[str] = []
    missed: Mapping | None = None  # the miss that started the current confirmation
    for e in events:
        kind, scan = e["kind"], e.get("scan_id")
        by = f"scan {scan}" if scan is not None else "no scan"
        look = f" ({e['look_status']})" if e.get("look_status") else ""
        if kind == NEW:
            text = f"new {e['new_severity']} finding, seen by {by}"
        elif kind == SEVERITY:
            text = f"severity {e['old_severity']} -> {e['new_severity']}, seen by {by}"
        elif kind == MISS:
            text = f"missed by {by}{look}; still open until a second miss confirms it"
            missed = e
        elif kind == SEEN_AGAIN:
            after = f", {span_text(e['at'] - missed['at'])} after the miss" if missed else ""
            text = f"seen again by {by}{after}: the miss is cleared"
            missed = None
        elif kind == FIX and missed is not None:
            text = (f"fixed after a second miss by {by}{look}, {span_text(e['at'] - missed['at'])} after "
                    f"the first by scan {missed.get('scan_id')}")
            missed = None
        elif kind == FIX:  # recorded before a fix took two misses
            text = f"fixed: missed by {by}{look}"
        elif kind == REOPEN:
            text = f"reopened: seen {e['new_severity']} again by {by}"
            missed = None
        elif kind == OPT_OUT:
            text = "closed: the owner is on the opt-out list (not scanned since)"
            missed = None
        elif kind in MARKED:  # `findings mark`: who and why are on the event (none before 0009_mark_reason)
            text = f"{MARKED[kind]} by {e.get('marked_by') or 'an analyst'}"
            text += f": {e['reason']}" if e.get("reason") else ""
        else:
            text = kind
        out.append(text)
    return out


def explain_all(events: Sequence[Mapping]) -> list[str]:
    """`explain` for the events of several findings (one host's ports), in their given order:
    each event is explained among its own finding's events (by finding_id)."""
    by_finding: dict[object, list[int]] = {}
    for position, e in enumerate(events):
        by_finding.setdefault(e.get("finding_id"), []).append(position)
    out = [""] * len(events)
    for positions in by_finding.values():
        for position, text in zip(positions, explain([events[p] for p in positions])):
            out[position] = text
    return out


@dataclass(frozen=True)
class ScanDiff:
    appeared: tuple[Key, ...]  # exposed now, not exposed (or not seen) before
    disappeared: tuple[Key, ...]  # exposed before, seen and not exposed now
    changed: tuple[tuple[Key, str, str], ...]  # exposed both times, other severity
    unchanged: int


def diff_scans(before: Mapping[Key, str | None], after: Mapping[Key, str | None]) -> ScanDiff:
    """Compare two scans' endpoint -> severity maps (None: looked, nothing exposed).

    An endpoint missing from `after` was not looked at (scope changed, scan cut short): it
    is neither fixed nor unchanged, so it is left out rather than guessed.
    """
    appeared, disappeared, changed, same = [], [], [], 0
    for key in sorted(after, key=_sort_key):
        now, was = after[key], before.get(key)
        if now is not None and was is None:
            appeared.append(key)
        elif now is None and was is not None:
            disappeared.append(key)
        elif now is not None and was is not None and now != was:  # was is set here (see the first test)
            changed.append((key, was, now))
        elif now is not None:
            same += 1
    return ScanDiff(tuple(appeared), tuple(disappeared), tuple(changed), same)


def _sort_key(key: Key) -> tuple:
    from ipaddress import ip_address

    ip, port = key
    parsed = ip_address(ip)
    return parsed.version, int(parsed), port
