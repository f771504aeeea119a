"""Persistence of owners, the facts cache, attributions, cases and the outbox (the tables in
store/notify_tables.py). It moves rows and decides nothing: decisions are in attribution/owner.py,
notify/cases.py and notify/outbox.py. Writes use the store's write transactions (BEGIN IMMEDIATE
on SQLite), so a claim on an outbox message is atomic between processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from pacswatch.attribution.cache import CacheEntry
from pacswatch.attribution.facts import Fact
from pacswatch.attribution.local import LocalOwner
from pacswatch.attribution.owner import Attribution
from pacswatch.findings.lifecycle import OPTED_OUT
from pacswatch.notify import outbox as O
from pacswatch.notify import cases as C
from pacswatch.notify.cases import Case, Transition
from pacswatch.notify.optout import OptOuts, named_addresses
from pacswatch.store import notify_tables as T
from pacswatch.store.repository import operator
from pacswatch.store.tables import findings, optouts

_CASE_FIELDS = [f.name for f in fields(Case)]
VALUES_PER_QUERY = 500  # values (addresses, ids) named in one IN query: well under SQLite's limit on parameters
_MSG_FIELDS = [f.name for f in fields(O.OutboxMessage)]


def _utc(v):
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v


def _row(mapping) -> dict[str, Any]:
    return {k: _utc(v) for k, v in dict(mapping).items()}


def _case(row) -> Case:
    return Case(**{k: v for k, v in _row(row).items() if k in _CASE_FIELDS})


def _msg(row) -> O.OutboxMessage:
    data = _row(row)
    data["raw"] = bytes(data["raw"])
    return O.OutboxMessage(**{k: v for k, v in data.items() if k in _MSG_FIELDS})


class NotifyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Messages `claim` refused because of an opt-out, as (key, why), for the caller's report.
        self.cancelled: list[tuple[str, str]] = []

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(pacswatch_write=True)
            with conn.begin():
                yield conn

    def _all(self, query) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ owners (local contacts)

    def add_owner(self, entry: LocalOwner, at: datetime) -> int:
        with self.write() as conn:
            return conn.execute(insert(T.owners).returning(T.owners.c.id), {
                "match": entry.match, "name": entry.name, "contacts": list(entry.contacts),
                "escalation": list(entry.escalation), "language": entry.language, "notes": entry.notes,
                "added_at": at, "added_by": operator()}).scalar_one()

    def remove_owner(self, owner_id: int, at: datetime | None = None) -> bool:
        """Remove a local owner, and with it what was decided from it: its addresses' stored
        attributions (attributed afresh next time) and its open cases (closed, with the reason).
        SQLite may give the next owner added the same id, and cases and attributions are keyed
        by it: without this, a new owner would inherit the old one's case, greeting and routes,
        and be mailed about another organisation's servers."""
        at = at or datetime.now(UTC)
        key = f"local:{owner_id}"
        with self.write() as conn:
            if conn.execute(delete(T.owners).where(T.owners.c.id == owner_id)).rowcount != 1:
                return False
            conn.execute(delete(T.attributions).where(T.attributions.c.owner_key == key))
            rows = conn.execute(select(T.cases).where(T.cases.c.owner_key == key,
                                                      T.cases.c.state.in_(C.OPEN_STATES + (C.FIXED,))))
            why = f"owner entry {owner_id} was removed"
            for row in rows.mappings().all():
                case, transition = C.close(_case(row), at, why)
                self.save_case(case, (transition,), conn=conn)
                waiting = conn.execute(select(T.outbox).where(T.outbox.c.case_id == case.id,
                                                              T.outbox.c.state == O.PENDING))
                for message in waiting.mappings().all():  # queued for the old owner: never sent
                    self.cancel(_msg(message), at, why, conn=conn)
            return True

    def owners(self) -> list[LocalOwner]:
        return [LocalOwner(r["match"], r["name"], tuple(r["contacts"]), r["language"], r["notes"], r["id"],
                           tuple(r["escalation"] or ())) for r in self._all(select(T.owners).order_by(T.owners.c.id))]

    # ------------------------------------------------------------------ facts cache (FactCache)

    def get(self, subject: str, group: str, now: datetime) -> CacheEntry | None:
        rows = self._all(select(T.attribution_facts).where(T.attribution_facts.c.subject == subject,
                                                           T.attribution_facts.c.grp == group))
        if not rows or rows[0]["expires_at"] <= now:
            return None
        r = rows[0]
        return CacheEntry(tuple(Fact.from_dict(f) for f in r["facts"]), r["stored_at"], r["expires_at"])

    def put(self, subject: str, group: str, facts: list[Fact], now: datetime, expires_at: datetime) -> None:
        with self.write() as conn:
            conn.execute(delete(T.attribution_facts).where(T.attribution_facts.c.subject == subject,
                                                           T.attribution_facts.c.grp == group))
            conn.execute(insert(T.attribution_facts), {"subject": subject, "grp": group,
                                                       "facts": [f.to_dict() for f in facts],
                                                       "stored_at": now, "expires_at": expires_at})

    def purge_expired(self, now: datetime) -> int:
        with self.write() as conn:
            return conn.execute(delete(T.attribution_facts).where(T.attribution_facts.c.expires_at <= now)).rowcount

    # ------------------------------------------------------------------ attributions

    def save_attribution(self, attribution: Attribution, facts: list[Fact], at: datetime) -> bool:
        """Store the decision; True when it changed (another owner, contact or set of facts)."""
        return self.save_attributions([(attribution, facts)], at)[0]

    def save_attributions(self, decisions: list[tuple[Attribution, list[Fact]]], at: datetime) -> list[bool]:
        """Store many decisions in one transaction (one commit, not one per address); for each,
        True when it changed."""
        changed = []
        with self.write() as conn:
            for a, facts in decisions:
                row = {"ip": a.ip, "owner_key": a.owner_key, "owner_name": a.owner_name,
                       "contact": a.contact.address if a.contact else None,
                       "contact_role": a.contact.role if a.contact else None,
                       "escalation": a.escalation.address if a.escalation else None, "confidence": a.confidence,
                       "language": a.language, "cloud": a.cloud, "reasons": list(a.reasons),
                       "facts": [f.to_dict() for f in facts], "facts_digest": a.facts_digest, "decided_at": at}
                old = conn.execute(select(T.attributions).where(T.attributions.c.ip == a.ip)).mappings().first()
                if old is None:
                    conn.execute(insert(T.attributions), row)
                    changed.append(True)
                    continue
                conn.execute(update(T.attributions).where(T.attributions.c.ip == a.ip).values(**row))
                changed.append(any(old[k] != row[k] for k in ("owner_key", "contact", "escalation", "facts_digest")))
        return changed

    def attributions(self, ips: list[str] | None = None) -> dict[str, dict[str, Any]]:
        query = select(T.attributions)
        if ips is not None:
            query = query.where(T.attributions.c.ip.in_(ips))
        return {r["ip"]: r for r in self._all(query)}

    # ------------------------------------------------------------------ cases

    def create_case(self, case: Case, transition: Transition) -> Case:
        (created,) = self.create_cases([(case, transition)])
        return created

    def create_cases(self, new: Iterable[tuple[Case, Transition]]) -> list[Case]:
        """create_case() for each, in order (so the ids are those one by one would get), in one
        transaction: the attribution after a scan may open a case per address."""
        created = []
        with self.write() as conn:
            for case, transition in new:
                values = {k: v for k, v in asdict(case).items() if k != "id"}
                case_id = conn.execute(insert(T.cases).returning(T.cases.c.id), values).scalar_one()
                self._event(conn, case_id, transition)
                created.append(Case(**{**asdict(case), "id": case_id}))
        return created

    def save_case(self, case: Case, transitions: tuple[Transition, ...] = (), *, note: str | None = None,
                  at: datetime | None = None, conn: Connection | None = None) -> None:
        values = {k: v for k, v in asdict(case).items() if k != "id"}

        def run(c: Connection) -> None:
            c.execute(update(T.cases).where(T.cases.c.id == case.id).values(**values))
            for t in transitions:
                self._event(c, case.stored_id, t)
            if note:
                c.execute(insert(T.case_events), {"case_id": case.id, "at": at or case.updated_at, "kind": "note",
                                                  "from_state": None, "to_state": None, "why": note})
        if conn is not None:
            run(conn)
        else:
            with self.write() as c:
                run(c)

    def _event(self, conn: Connection, case_id: int, t: Transition, kind: str = "transition") -> None:
        conn.execute(insert(T.case_events), {"case_id": case_id, "at": t.at, "kind": kind,
                                             "from_state": t.from_state, "to_state": t.to_state, "why": t.why})

    def case(self, case_id: int) -> Case | None:
        rows = self._all(select(T.cases).where(T.cases.c.id == case_id))
        return _case(rows[0]) if rows else None

    def cases(self, states: list[str] | None = None, ids: list[int] | None = None) -> list[Case]:
        query = select(T.cases).order_by(T.cases.c.id)
        if states:
            query = query.where(T.cases.c.state.in_(states))
        if ids is not None:
            query = query.where(T.cases.c.id.in_(ids))
        return [_case(r) for r in self._all(query)]

    def history(self, case_id: int) -> list[dict[str, Any]]:
        return self._all(select(T.case_events).where(T.case_events.c.case_id == case_id)
                         .order_by(T.case_events.c.at, T.case_events.c.id))

    def assign(self, ip: str, port: int, case_id: int, at: datetime) -> bool:
        """Put a service in a case (moving it from another); True if that changed anything."""
        return self.assign_many([(ip, port, case_id)], at) == 1

    def assign_many(self, services: Iterable[tuple[str, int, int]], at: datetime) -> int:
        """assign() for each (ip, port, case_id), in one transaction: after a scan there is one
        per exposed service, and a commit each was most of the attribution's time (bench/README.md,
        "Speed, measured"). Returns how many changed."""
        services = list(services)
        if not services:
            return 0
        with self.write() as conn:
            # Where each service is now, read by address a few hundred at a time (a statement
            # per service was most of what was left of the attribution after a scan), then one
            # executemany per kind of change.
            ips = sorted({ip for ip, _, _ in services})
            stored = {}
            for start in range(0, len(ips), VALUES_PER_QUERY):
                stored.update({(r.ip, r.port): r.case_id for r in conn.execute(
                    select(T.case_services.c.ip, T.case_services.c.port, T.case_services.c.case_id)
                    .where(T.case_services.c.ip.in_(ips[start:start + VALUES_PER_QUERY])))})
            now = dict(stored)  # as the services before this one left it
            added: dict[tuple[str, int], int] = {}
            moved: dict[tuple[str, int], int] = {}
            changed = 0
            for ip, port, case_id in services:
                key = (ip, port)
                if now.get(key) == case_id:
                    continue
                (moved if key in stored else added)[key] = now[key] = case_id
                changed += 1
            if added:
                conn.execute(insert(T.case_services), [{"ip": ip, "port": port, "case_id": case_id, "added_at": at}
                                                       for (ip, port), case_id in added.items()])
            if moved:
                conn.execute(update(T.case_services)
                             .where(T.case_services.c.ip == bindparam("b_ip"), T.case_services.c.port == bindparam("b_port"))
                             .values(case_id=bindparam("b_case_id"), added_at=at),
                             [{"b_ip": ip, "b_port": port, "b_case_id": case_id} for (ip, port), case_id in moved.items()])
        return changed

    def services_of(self, case_id: int) -> list[tuple[str, int]]:
        rows = self._all(select(T.case_services).where(T.case_services.c.case_id == case_id)
                         .order_by(T.case_services.c.ip, T.case_services.c.port))
        return [(r["ip"], r["port"]) for r in rows]

    def services_by_case(self) -> dict[int, list[tuple[str, int]]]:
        """services_of() of every case, in one read (a review of every case needs them all)."""
        out: dict[int, list[tuple[str, int]]] = {}
        for r in self._all(select(T.case_services).order_by(T.case_services.c.ip, T.case_services.c.port)):
            out.setdefault(r["case_id"], []).append((r["ip"], r["port"]))
        return out

    def case_of_services(self) -> dict[tuple[str, int], int]:
        return {(r["ip"], r["port"]): r["case_id"] for r in self._all(select(T.case_services))}

    def note(self, case_id: int, at: datetime, why: str) -> None:
        """A line in a case's history that is neither a transition nor a message."""
        with self.write() as conn:
            conn.execute(insert(T.case_events), {"case_id": case_id, "at": at, "kind": "note", "from_state": None,
                                                 "to_state": None, "why": why})

    # ------------------------------------------------------------------ opt-outs (read here, decided in optout.py)

    def optouts(self, conn: Connection | None = None) -> OptOuts:
        query = select(optouts).order_by(optouts.c.id)
        rows = [_row(r) for r in conn.execute(query).mappings()] if conn is not None else self._all(query)
        return OptOuts.from_rows(rows)

    def opted_out_services(self, case_ids: list[int] | None = None) -> dict[int, list[tuple[str, int]]]:
        """Case id -> its services that are opted out: on the opt-out list now, or closed as
        opted-out (a lifted opt-out leaves the finding so until a scan sees it again). Of every
        case, or of `case_ids` only (a page of the dashboard)."""
        listed = self.optouts()
        closed = {(r["ip"], r["port"]) for r in self._all(
            select(findings.c.ip, findings.c.port).where(findings.c.status == OPTED_OUT))}
        out: dict[int, list[tuple[str, int]]] = {}
        services = select(T.case_services).order_by(T.case_services.c.ip, T.case_services.c.port)
        if case_ids is not None:
            services = services.where(T.case_services.c.case_id.in_(case_ids))
        for r in self._all(services):
            key = (r["ip"], r["port"])
            if key in closed or listed.address_reason(r["ip"]) is not None:
                out.setdefault(r["case_id"], []).append(key)
        return out

    # ------------------------------------------------------------------ outbox

    def enqueue(self, msg: O.OutboxMessage) -> bool:
        """Add the message unless its key is known (already queued, sent or failed): False then."""
        with self.write() as conn:
            if conn.execute(select(T.outbox.c.key).where(T.outbox.c.key == msg.key)).first():
                return False
            conn.execute(insert(T.outbox), asdict(msg))
            conn.execute(insert(T.case_events), {"case_id": msg.case_id, "at": msg.created_at, "kind": "message",
                                                 "from_state": None, "to_state": None,
                                                 "why": f"{msg.kind} to {msg.recipient} queued"})
            return True

    def message(self, key: str) -> O.OutboxMessage | None:
        rows = self._all(select(T.outbox).where(T.outbox.c.key == key))
        return _msg(rows[0]) if rows else None

    def messages(self, *, case_id: int | None = None, states: list[str] | None = None) -> list[O.OutboxMessage]:
        query = select(T.outbox).order_by(T.outbox.c.created_at, T.outbox.c.key)
        if case_id is not None:
            query = query.where(T.outbox.c.case_id == case_id)
        if states:
            query = query.where(T.outbox.c.state.in_(states))
        return [_msg(r) for r in self._all(query)]

    def due(self, now: datetime, limit: int = 100) -> list[O.OutboxMessage]:
        return [_msg(r) for r in self._all(select(T.outbox).where(T.outbox.c.state == O.PENDING,
                                                                  T.outbox.c.next_attempt_at <= now)
                                           .order_by(T.outbox.c.next_attempt_at, T.outbox.c.created_at).limit(limit))]

    def sent_times(self, since: datetime, *, recipient: str | None = None,
                   case_id: int | None = None) -> list[datetime]:
        query = select(T.outbox.c.sent_at).where(T.outbox.c.state == O.SENT, T.outbox.c.sent_at >= since)
        if recipient is not None:
            query = query.where(T.outbox.c.recipient == recipient)
        if case_id is not None:
            query = query.where(T.outbox.c.case_id == case_id)
        with self.engine.connect() as conn:
            return [_utc(v) for v in conn.execute(query).scalars()]

    def claim(self, msg: O.OutboxMessage, now: datetime) -> O.OutboxMessage | None:
        """pending -> sending, only if still pending (another sender may have taken it) and
        the opt-out list, read in the same transaction, lets it go: a message to an opted-out
        contact, or naming an opted-out address, is cancelled instead (see `cancel`)."""
        claimed = O.claim(msg, now)
        with self.write() as conn:
            why = self.veto(msg, self.optouts(conn), conn)
            if why is not None:
                if self.cancel(msg, now, why, conn=conn):
                    self.cancelled.append((msg.key, why))
                return None
            done = conn.execute(update(T.outbox).where(T.outbox.c.key == msg.key, T.outbox.c.state == O.PENDING)
                                .values(state=claimed.state, claimed_at=now, attempts=claimed.attempts)).rowcount
        return claimed if done == 1 else None

    def veto(self, msg: O.OutboxMessage, listed: OptOuts, conn: Connection | None = None) -> str | None:
        """Why `msg` must not be sent under the opt-out list `listed`, or None. The addresses
        it names are read from the message itself; one without its CSV is taken to name every
        service of its case."""
        if not listed:
            return None
        ips = named_addresses(msg.raw)
        if ips is None:
            query = select(T.case_services.c.ip).where(T.case_services.c.case_id == msg.case_id)
            ips = list(conn.execute(query).scalars()) if conn is not None else [r["ip"] for r in self._all(query)]
        return listed.veto(msg.recipient, ips)

    def cancel(self, msg: O.OutboxMessage, at: datetime, why: str, *, conn: Connection | None = None) -> bool:
        """Drop a pending message that must not go, with a line in its case's history saying why.
        The row goes (not a state): its key is what the message is about, and the next pass must
        be free to queue the notice again without what the opt-out removed."""
        def run(c: Connection) -> bool:
            gone = c.execute(delete(T.outbox).where(T.outbox.c.key == msg.key, T.outbox.c.state == O.PENDING)).rowcount
            if gone:
                c.execute(insert(T.case_events), {"case_id": msg.case_id, "at": at, "kind": "message",
                                                  "from_state": None, "to_state": None,
                                                  "why": f"{msg.kind} to {msg.recipient} cancelled, not sent: {why}"})
            return gone == 1
        if conn is not None:
            return run(conn)
        with self.write() as c:
            return run(c)

    def defer(self, key: str, until: datetime, why: str) -> None:
        with self.write() as conn:
            conn.execute(update(T.outbox).where(T.outbox.c.key == key, T.outbox.c.state == O.PENDING)
                         .values(next_attempt_at=until, last_error=why))

    def record_attempt(self, msg: O.OutboxMessage, at: datetime, on_sent=None) -> None:
        """Write the outcome of an attempt; with `on_sent(conn)`, in the same transaction (the
        case moves to notified together with the message becoming sent, or neither)."""
        with self.write() as conn:
            conn.execute(update(T.outbox).where(T.outbox.c.key == msg.key).values(
                state=msg.state, attempts=msg.attempts, claimed_at=msg.claimed_at, sent_at=msg.sent_at,
                next_attempt_at=msg.next_attempt_at, last_error=msg.last_error, response=msg.response))
            outcome = "sent" if msg.state == O.SENT else f"attempt {msg.attempts} failed ({msg.last_error})"
            conn.execute(insert(T.case_events), {"case_id": msg.case_id, "at": at,
                                                 "kind": "message", "from_state": None, "to_state": None,
                                                 "why": f"{msg.kind} to {msg.recipient}: {outcome}"})
            if msg.state == O.SENT and on_sent is not None:
                on_sent(conn)

    def apply_sent(self, conn: Connection, msg: O.OutboxMessage) -> None:
        """The case side of a sent message (cases.sent), inside the outbox's transaction."""
        from pacswatch.notify.cases import sent

        row = conn.execute(select(T.cases).where(T.cases.c.id == msg.case_id)).mappings().first()
        if row is None:
            return
        assert msg.sent_at is not None  # called for a message just marked sent
        case, transitions = sent(_case(row), msg.kind, msg.sent_at, msg.recipient)
        self.save_case(case, transitions, conn=conn)

    def replace_message(self, msg: O.OutboxMessage) -> None:
        with self.write() as conn:
            conn.execute(update(T.outbox).where(T.outbox.c.key == msg.key).values(
                state=msg.state, attempts=msg.attempts, claimed_at=msg.claimed_at,
                next_attempt_at=msg.next_attempt_at, last_error=msg.last_error))
