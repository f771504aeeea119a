"""Every change a person makes through the dashboard is an event with their name on it.

On a case, it is a line in the case's history (notify's case_events, kind "note"), which
`pacswatch cases show` prints too; on a finding, a row of finding_triage (false positive,
suppressed, cleared, rescan requested, or a plain note), shown in the finding's timeline.
Callers pass the connection of the transaction that makes the change, so the change and its
event are written together or not at all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from pacswatch.store.notify_tables import case_events
from pacswatch.store.web_tables import finding_triage
from pacswatch.text import clean
from pacswatch.web.accounts import User

FINDING_ACTIONS = ("false-positive", "suppressed", "cleared", "rescan", "note")
MAX_REASON = 2000


def by_line(what: str, user: User) -> str:
    """The text of a case event: what was done, and by whom."""
    return f"{what} (by {user.name}, dashboard)"


def record_event(conn: Connection, user: User, what: str, at: datetime, *, case_id: int | None = None,
                 finding_id: int | None = None, action: str = "note", until: datetime | None = None) -> None:
    """One event for a case or for a finding (exactly one of the two ids). `what` is a person's
    text (a reason, a note): cleaned of control characters and capped, as a peer's string is."""
    if (case_id is None) == (finding_id is None):
        raise ValueError("an event belongs to one case or one finding")
    text = clean(what, MAX_REASON)
    if case_id is not None:
        conn.execute(insert(case_events), {"case_id": case_id, "at": at, "kind": "note", "from_state": None,
                                           "to_state": None, "why": by_line(text, user)})
        return
    if action not in FINDING_ACTIONS:
        raise ValueError(f"unknown finding action {action!r}")
    conn.execute(insert(finding_triage), {"finding_id": finding_id, "at": at, "user_name": user.name,
                                          "action": action, "until": until, "reason": text or None})
