"""The outbox: every message is written down before it is sent, and its state lives here.

A message is rendered once and stored whole (its RFC 5322 bytes), under an idempotency key
derived from what it is (case, round, kind, sequence, recipient): deciding twice to send the
same notice finds the key taken and adds nothing, and a retry sends the very same bytes, same
Message-ID included. States:

    pending ──claim──► sending ──relay said 250──► sent
       ▲                  │
       └──failure: back-off (temporary, or permanent up to a few tries)──┘
                          └──too many failures──► failed (kept, shown, retried by an operator)

A crash while `sending` leaves the row there; `release_stale` puts it back after a lease, to be
sent again with the same Message-ID. That is the one window where a duplicate is possible: the
relay accepted the message and we died before writing it down (RFC 1047); SMTP gives no way to
close it, and the stable Message-ID lets receiving systems drop the copy. A transaction that
ends before the relay's final reply is not delivered by the relay (RFC 5321 4.1.1.4), so a
timeout or a dropped connection mid-message is safe to retry.

All functions here are pure: time is an argument; notify/store.py moves the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


def message_key(case_id: int, round_: int, kind: str, seq: int, recipient: str) -> str:
    raw = f"pacswatch:{case_id}:{round_}:{kind}:{seq}:{recipient.strip().lower()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class OutboxMessage:
    key: str
    case_id: int
    kind: str
    seq: int
    round: int
    recipient: str
    subject: str
    raw: bytes
    created_at: datetime
    next_attempt_at: datetime
    state: str = PENDING
    attempts: int = 0
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    response: str | None = None


@dataclass(frozen=True)
class Backoff:
    first: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=6)
    max_attempts: int = 10  # temporary failures (4xx, timeouts, dropped connections)
    max_permanent: int = 3  # 5xx: usually our mistake or the relay's policy; a few tries, then a person

    def delay(self, attempts: int) -> timedelta:
        seconds = self.first.total_seconds() * self.factor ** max(0, attempts - 1)
        return timedelta(seconds=min(seconds, self.cap.total_seconds()))


@dataclass(frozen=True)
class SendResult:
    ok: bool
    permanent: bool = False
    detail: str = ""


def claim(msg: OutboxMessage, now: datetime) -> OutboxMessage:
    if msg.state != PENDING:
        raise ValueError(f"message {msg.key} is {msg.state}, not pending")
    return replace(msg, state=SENDING, claimed_at=now, attempts=msg.attempts + 1)


def after_send(msg: OutboxMessage, result: SendResult, now: datetime, backoff: Backoff) -> OutboxMessage:
    """The message after one attempt (msg is the claimed one: attempts already counted)."""
    if result.ok:
        return replace(msg, state=SENT, sent_at=now, response=result.detail[:500], last_error=None)
    limit = backoff.max_permanent if result.permanent else backoff.max_attempts
    state = FAILED if msg.attempts >= limit else PENDING
    return replace(msg, state=state, claimed_at=None, last_error=result.detail[:500],
                   next_attempt_at=now + backoff.delay(msg.attempts))


def release_stale(msg: OutboxMessage, now: datetime, lease: timedelta) -> OutboxMessage | None:
    """A message left `sending` longer than `lease` (the sender died): pending again."""
    if msg.state == SENDING and msg.claimed_at is not None and now - msg.claimed_at >= lease:
        return replace(msg, state=PENDING, claimed_at=None, next_attempt_at=now,
                       last_error=(msg.last_error or "") + " [sender stopped mid-attempt; resending]")
    return None


def retry_failed(msg: OutboxMessage, now: datetime) -> OutboxMessage:
    """An operator asks to try a failed message again (after fixing the relay settings)."""
    if msg.state != FAILED:
        return msg
    return replace(msg, state=PENDING, attempts=0, next_attempt_at=now)


@dataclass(frozen=True)
class RateLimits:
    per_recipient: int = 3  # messages to one address ...
    per_recipient_window: timedelta = timedelta(days=1)  # ... within this window
    global_per_window: int = 60  # messages overall ...
    global_window: timedelta = timedelta(minutes=1)  # ... within this window
    suppression: timedelta = timedelta(days=3)  # no second message about one case to one address within this


def rate_wait(now: datetime, recipient_sent: Iterable[datetime], global_sent: Iterable[datetime],
              limits: RateLimits) -> datetime | None:
    """None if a message may go now, else the earliest time it may (pure: the caller passes the
    send times it has, at least those within the windows)."""
    waits: list[datetime] = []
    for times, window, limit in ((list(recipient_sent), limits.per_recipient_window, limits.per_recipient),
                                 (list(global_sent), limits.global_window, limits.global_per_window)):
        recent = sorted(t for t in times if now - t < window)
        if limit <= 0:
            continue
        if len(recent) >= limit:
            waits.append(recent[len(recent) - limit] + window)
    return max(waits) if waits else None


def suppressed_until(now: datetime, kind: str, case_sent_to_recipient: Iterable[datetime],
                     limits: RateLimits) -> datetime | None:
    """A second message about the same case to the same address within the suppression window
    waits (e.g. a case fixed and exposed again the same week): a burst of notices about one thing
    reads as spam and gets the sender filtered."""
    recent = [t for t in case_sent_to_recipient if now - t < limits.suppression]
    if not recent:
        return None
    return max(recent) + limits.suppression
