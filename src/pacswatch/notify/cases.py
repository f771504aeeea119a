"""Cases and their lifecycle, as pure functions (no clock, no I/O: time is an argument).

One case per owner groups that owner's exposed services. States:

    new ──notice sent──► notified ──owner answers──► acknowledged
     ▲                      │  ╲                         │
     │ exposed again        │   ╲ no change after the    │
     │                      ▼    ╲ follow-ups            ▼
   fixed ◄──every service seen closed by a rescan──── (any open state)
                                  ▼
                                stale ──► closed (by a person; also from any state)

Every transition carries its time and a sentence saying why; the store keeps them as the case's
history (cisagov/cyhy-core's ticket manager keeps events the same way). What to send next is
decided here too (`review`), and carried out through the outbox (outbox.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Iterable

NEW, NOTIFIED, ACKNOWLEDGED, FIXED, STALE, CLOSED = "new", "notified", "acknowledged", "fixed", "stale", "closed"
STATES = (NEW, NOTIFIED, ACKNOWLEDGED, FIXED, STALE, CLOSED)
OPEN_STATES = (NEW, NOTIFIED, ACKNOWLEDGED, STALE)
INITIAL, FOLLOWUP, ESCALATION = "initial", "followup", "escalation"  # message kinds

ALLOWED = {
    NEW: {NOTIFIED, FIXED, CLOSED},
    NOTIFIED: {ACKNOWLEDGED, FIXED, STALE, CLOSED},
    ACKNOWLEDGED: {FIXED, STALE, CLOSED},
    FIXED: {NEW, CLOSED},
    STALE: {FIXED, CLOSED, ACKNOWLEDGED},
    CLOSED: set(),
}


class TransitionError(ValueError):
    """A transition the lifecycle does not allow (closed is final, fixed needs a rescan, ...)."""


@dataclass(frozen=True)
class Policy:
    followup_after: timedelta = timedelta(days=14)  # after the last notice, if not fixed
    max_followups: int = 1
    escalate_after: timedelta = timedelta(days=14)  # after the last follow-up
    stale_after: timedelta = timedelta(days=30)  # after the last message of any kind

    @classmethod
    def days(cls, followup: float = 14, max_followups: int = 1, escalate: float = 14, stale: float = 30) -> "Policy":
        return cls(timedelta(days=followup), max_followups, timedelta(days=escalate), timedelta(days=stale))


@dataclass(frozen=True)
class ServiceView:
    """What the findings say about one service of a case now."""

    ip: str
    port: int
    exposed: bool
    checked_at: datetime  # the look that decided `exposed` (a rescan's time for a fixed one)
    severity: str | None = None


@dataclass(frozen=True)
class Transition:
    from_state: str | None
    to_state: str
    at: datetime
    why: str


@dataclass(frozen=True)
class Case:
    owner_key: str
    state: str
    opened_at: datetime
    updated_at: datetime
    id: int | None = None
    owner_name: str = ""
    notified_at: datetime | None = None
    last_notice_at: datetime | None = None
    followups: int = 0
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    fixed_at: datetime | None = None
    closed_at: datetime | None = None
    round: int = 1  # incremented when a fixed case opens again: messages of a new round are new

    @property
    def stored_id(self) -> int:
        """The id of a case the store gave back (only open_case's new case, before
        NotifyStore.create_case, has none)."""
        if self.id is None:
            raise ValueError("this case was never stored: it has no id")
        return self.id

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class Review:
    case: Case
    transitions: tuple[Transition, ...] = ()
    send: str | None = None  # INITIAL | FOLLOWUP | ESCALATION
    why: str = ""


def open_case(owner_key: str, owner_name: str, at: datetime) -> tuple[Case, Transition]:
    case = Case(owner_key, NEW, at, at, owner_name=owner_name)
    return case, Transition(None, NEW, at, f"exposed services attributed to {owner_name or owner_key}")


def move(case: Case, to: str, at: datetime, why: str) -> tuple[Case, Transition]:
    if to not in ALLOWED[case.state]:
        raise TransitionError(f"case {case.id}: {case.state} -> {to} is not allowed")
    extra: dict = {}
    if to == ACKNOWLEDGED:
        extra["acknowledged_at"] = at
    elif to == FIXED:
        extra["fixed_at"] = at
    elif to == CLOSED:
        extra["closed_at"] = at
    elif to == NEW:  # exposed again: a new round of notices, from the first
        extra = {"fixed_at": None, "notified_at": None, "last_notice_at": None, "followups": 0,
                 "escalated_at": None, "acknowledged_at": None, "round": case.round + 1}
    return replace(case, state=to, updated_at=at, **extra), Transition(case.state, to, at, why)


def sent(case: Case, kind: str, at: datetime, recipient: str) -> tuple[Case, tuple[Transition, ...]]:
    """A message of `kind` went out (the SMTP relay accepted it) at `at`."""
    if kind == INITIAL:
        case = replace(case, notified_at=case.notified_at or at, last_notice_at=at, updated_at=at)
        if case.state == NEW:
            case, t = move(case, NOTIFIED, at, f"first notice accepted for delivery to {recipient}")
            return case, (t,)
        return case, ()
    if kind == FOLLOWUP:
        return replace(case, followups=case.followups + 1, last_notice_at=at, updated_at=at), ()
    if kind == ESCALATION:
        return replace(case, escalated_at=at, last_notice_at=at, updated_at=at), ()
    raise ValueError(f"unknown message kind {kind!r}")


def acknowledge(case: Case, at: datetime, note: str) -> tuple[Case, Transition]:
    return move(case, ACKNOWLEDGED, at, f"owner acknowledged: {note}" if note else "owner acknowledged")


def close(case: Case, at: datetime, why: str) -> tuple[Case, Transition]:
    return move(case, CLOSED, at, why or "closed by an operator")


def _all_closed_since(services: list[ServiceView], since: datetime | None) -> bool:
    return bool(services) and all(not s.exposed and (since is None or s.checked_at >= since) for s in services)


def review(case: Case, services: Iterable[ServiceView], now: datetime, policy: Policy, *,
           can_escalate: bool = True) -> Review:
    """What happens to `case` now, given its services' latest looks: a state change, a message
    to send, or nothing. Called after every rescan and by `pacswatch notify`."""
    services = list(services)
    exposed = [s for s in services if s.exposed]
    transitions: list[Transition] = []
    if case.state == CLOSED:
        return Review(case)
    if case.state == FIXED:
        if exposed:
            s = exposed[0]
            case, t = move(case, NEW, now, f"{s.ip}:{s.port} exposed again (seen {s.checked_at:%Y-%m-%d %H:%M} UTC)")
            return Review(case, (t,), INITIAL, "exposed again after a fix: a new first notice")
        return Review(case)
    if not services:
        # Its services were all attributed to another owner since (an operator added a closer
        # owner entry, a registry changed): nothing is left to tell this owner.
        case, t = move(case, CLOSED, now, "no services left: they now belong to other owners' cases")
        return Review(case, (t,))
    # "Verified closed by a rescan": every service looked at after the owner was told (or, for
    # a case not yet notified, after it was opened) and found closed.
    since = case.notified_at or case.opened_at
    if _all_closed_since(services, since):
        last = max(s.checked_at for s in services)
        case, t = move(case, FIXED, now, f"all {len(services)} service(s) seen closed by the rescan of "
                                         f"{last:%Y-%m-%d %H:%M} UTC")
        return Review(case, (t,))
    if not exposed:
        return Review(case, (), None, "waiting for a rescan to verify the fix")
    if case.state == NEW:
        return Review(case, (), INITIAL, "new case")
    if case.state == STALE:
        return Review(case)
    last = case.last_notice_at or case.notified_at or case.opened_at
    quiet = now - last
    # A reminder or an escalation says "our latest scan still finds": only true when a look
    # after the last message saw a service exposed. Without a rescan since, it waits for one.
    seen_since = any(s.checked_at >= last for s in exposed)
    if case.followups < policy.max_followups and quiet >= policy.followup_after:
        if not seen_since:
            return Review(case, (), None, "a reminder waits for a rescan that finds the services still exposed")
        return Review(case, (), FOLLOWUP, f"still exposed {quiet.days} days after the last notice")
    if (case.state != ACKNOWLEDGED and can_escalate and case.escalated_at is None
            and case.followups >= policy.max_followups and quiet >= policy.escalate_after):
        if not seen_since:
            return Review(case, (), None, "an escalation waits for a rescan that finds the services still exposed")
        return Review(case, (), ESCALATION, f"no fix {quiet.days} days after {case.followups} follow-up(s)")
    done_escalating = case.escalated_at is not None or not can_escalate or case.state == ACKNOWLEDGED
    if case.followups >= policy.max_followups and done_escalating and quiet >= policy.stale_after:
        case, t = move(case, STALE, now, f"no change {quiet.days} days after the last message; "
                                         "further notices stop (rescans go on)")
        transitions.append(t)
    return Review(case, tuple(transitions))
