"""From findings to messages: group exposed services into cases by owner, review every case
(fixed, stale, exposed again, due a follow-up or an escalation), and queue what must be sent.

It reads the campaign store's findings (open, reopened, fixed, with their times) and writes only
the notify tables. The decisions are cases.review and owner.decide; here they are applied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from email.policy import SMTP

from sqlalchemy import select

from pacswatch.notify import cases as C
from pacswatch.notify import outbox as O
from pacswatch.notify.exposure import Exposure, from_finding
from pacswatch.notify.render import Renderer, Sender, build_email
from pacswatch.notify.store import NotifyStore

EXPOSED = ("open", "reopened")
# CRLF line ends (the bytes go to the relay as they are); headers unfolded up to RFC 5322's 998,
# since the default 78 folds a long subject onto a line of its own, which some clients show badly.
SMTP_POLICY = SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Settings:
    policy: C.Policy = field(default_factory=C.Policy)
    limits: O.RateLimits = field(default_factory=O.RateLimits)
    backoff: O.Backoff = field(default_factory=O.Backoff)
    sender: Sender = field(default_factory=Sender)
    lease: timedelta = timedelta(minutes=15)


@dataclass
class Planned:
    """What one pass decided: transitions applied, messages queued (or, in a dry run, built)."""

    created: list[int] = field(default_factory=list)
    transitions: list[tuple[int, C.Transition]] = field(default_factory=list)
    messages: list[O.OutboxMessage] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    no_contact: list[int] = field(default_factory=list)
    unattributed: int = 0


def load_exposures(engine, findings: Iterable[dict[str, Any]]) -> dict[tuple[str, int], Exposure]:
    """Findings (Repository.findings() rows) as Exposures, with protocol facts from their latest
    observation's record (counts and facts only: see exposure.py)."""
    from pacswatch.store.tables import observations

    findings = list(findings)
    ids = [f["last_observation_id"] for f in findings if f.get("last_observation_id")]
    records: dict[int, dict] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            query = select(observations.c.id, observations.c.record).where(observations.c.id.in_(chunk))
            records.update({i: r for i, r in conn.execute(query).all()})
    return {(f["ip"], int(f["port"])): from_finding(f, records.get(f.get("last_observation_id"))) for f in findings}


def routes(attributions: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """A case's recipient and escalation route: those of its most confident attribution (pure).
    Ties go to the contact most of the case's addresses name."""
    with_contact = [a for a in attributions if a.get("contact")]
    if not with_contact:
        return None, None
    votes = Counter(a["contact"] for a in with_contact)
    best = max(with_contact, key=lambda a: (a["confidence"], votes[a["contact"]], a["contact"]))
    escalation = next((a["escalation"] for a in sorted(with_contact, key=lambda a: -a["confidence"])
                       if a.get("escalation")), None)
    return best["contact"], escalation


def service_view(e: Exposure) -> C.ServiceView:
    return C.ServiceView(e.ip, e.port, e.exposed, e.last_seen, e.severity)


def build_message(case: C.Case, kind: str, exposures: list[Exposure], recipient: str, *, settings: Settings,
                  renderer: Renderer, now: datetime) -> O.OutboxMessage:
    seq = case.followups + 1 if kind == C.FOLLOWUP else 1
    key = O.message_key(case.id, case.round, kind, seq, recipient)
    rendered = renderer.render(kind, case, exposures, sender=settings.sender, owner_name=case.owner_name,
                               followup_number=seq)
    email = build_email(rendered, sender=settings.sender, recipient=recipient, key=key, at=now, case_id=case.id)
    raw = email.as_bytes(policy=SMTP_POLICY)
    return O.OutboxMessage(key, case.id, kind, seq, case.round, recipient, rendered.subject, raw, now, now)


def sync_cases(store: NotifyStore, exposures: dict[tuple[str, int], Exposure], now: datetime, plan: Planned) -> None:
    """Every exposed, attributed service into its owner's case (a new case when the owner has
    none open or fixed; a closed case is never reused)."""
    attributions = store.attributions()
    by_owner: dict[str, C.Case] = {}
    for case in store.cases():
        if case.state != C.CLOSED:
            by_owner[case.owner_key] = case  # the latest per owner
    for (ip, port), e in sorted(exposures.items()):
        if not e.exposed:
            continue
        a = attributions.get(ip)
        if a is None:
            plan.unattributed += 1
            continue
        case = by_owner.get(a["owner_key"])
        if case is None:
            case = store.create_case(*C.open_case(a["owner_key"], a["owner_name"], now))
            by_owner[a["owner_key"]] = case
            plan.created.append(case.id)
        store.assign(ip, port, case.id, now)


def plan_pass(store: NotifyStore, exposures: dict[tuple[str, int], Exposure], *, now: datetime, settings: Settings,
              renderer: Renderer | None = None, dry_run: bool = False) -> Planned:
    """One pass: sync cases, review each, queue messages (dry run: build them, queue nothing)."""
    renderer = renderer or Renderer()
    plan = Planned()
    sync_cases(store, exposures, now, plan)
    attributions = store.attributions()
    for case in store.cases():
        if case.state == C.CLOSED:
            continue
        members = [exposures[k] for k in store.services_of(case.id) if k in exposures]
        contact, escalation = routes([attributions[ip] for ip in {e.ip for e in members} if ip in attributions])
        review = C.review(case, [service_view(e) for e in members], now, settings.policy,
                          can_escalate=escalation is not None)
        if review.transitions:
            store.save_case(review.case, review.transitions)
            plan.transitions += [(case.id, t) for t in review.transitions]
        if review.send is None:
            continue
        recipient = escalation if review.send == C.ESCALATION else contact
        if recipient is None:
            plan.no_contact.append(case.id)
            continue
        open_members = [e for e in members if e.exposed]
        msg = build_message(review.case, review.send, open_members, recipient, settings=settings,
                            renderer=renderer, now=now)
        plan.messages.append(msg)
        if not dry_run and store.enqueue(msg):
            plan.queued.append(msg.key)
    return plan
