"""Deliver what the outbox holds: rate limits, suppression, claim, send, record; retries with
back-off. The decisions are outbox.py's pure functions; this loop only applies them in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pacswatch.notify import outbox as O
from pacswatch.notify.smtp import Transport
from pacswatch.notify.store import NotifyStore


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)  # keys
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def deliver(store: NotifyStore, transport: Transport, *, clock: Callable[[], datetime],
            limits: O.RateLimits | None = None, backoff: O.Backoff | None = None,
            lease: timedelta = timedelta(minutes=15), max_messages: int = 1000) -> DeliveryReport:
    limits, backoff = limits or O.RateLimits(), backoff or O.Backoff()
    report = DeliveryReport()
    now = clock()
    for msg in store.messages(states=[O.SENDING]):
        released = O.release_stale(msg, now, lease)
        if released is not None:
            store.replace_message(released)
            report.released.append(msg.key)
    for msg in store.due(now, limit=max_messages):
        now = clock()
        window_start = now - max(limits.per_recipient_window, limits.global_window, limits.suppression)
        to_recipient = store.sent_times(window_start, recipient=msg.recipient)
        overall = store.sent_times(now - limits.global_window)
        about_case = store.sent_times(now - limits.suppression, recipient=msg.recipient, case_id=msg.case_id)
        rate = O.rate_wait(now, to_recipient, overall, limits)
        quiet = O.suppressed_until(now, msg.kind, about_case, limits)
        waits = [(t, why) for t, why in ((rate, "rate limit"), (quiet, "suppression window")) if t is not None]
        if waits:
            until, why = max(waits)
            store.defer(msg.key, until, f"{why}: not before {until.isoformat()}")
            report.deferred.append(msg.key)
            continue
        claimed = store.claim(msg, now)
        if claimed is None:
            continue  # another sender took it
        result = transport.send(claimed)
        done_at = clock()
        outcome = O.after_send(claimed, result, done_at, backoff)
        store.record_attempt(outcome, done_at, on_sent=lambda conn, m=outcome: store.apply_sent(conn, m))
        if outcome.state == O.SENT:
            report.sent.append(msg.key)
        else:
            report.errors[msg.key] = result.detail
            (report.failed if outcome.state == O.FAILED else report.retrying).append(msg.key)
    return report
