"""Adding an opt-out: the one path for `pacswatch optout add` and the dashboard's confirmed
opt-out requests (web/optout_requests.py), so that both store the same entry and close the same
findings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pacswatch.campaign.scope import normalize_network
from pacswatch.notify.service import close_opted_out
from pacswatch.store.repository import Repository


@dataclass(frozen=True)
class OptOutAdded:
    entry: int
    cidr: str  # as stored (normalize_network)
    closed: list[dict]  # the findings closed as opted-out now


def add_optout(repo: Repository, network: str, contact: str, *, requested_at: datetime | None = None,
               note: str | None = None, added_by: str | None = None, at: datetime | None = None) -> OptOutAdded:
    """Store the entry and close its findings now (history kept); notify checks the list again
    before sending, and every scan's blocklist reads it. ValueError for a network that is not
    one (normalize_network says why). `added_by`: who, when not this process's user (the
    dashboard's user, or the contact who confirmed a request)."""
    cidr = normalize_network(network)
    entry = repo.add_optout(cidr, contact, requested_at=requested_at, note=note, added_by=added_by)
    closed = close_opted_out(repo.engine, at or datetime.now(UTC))
    return OptOutAdded(entry, cidr, closed)
