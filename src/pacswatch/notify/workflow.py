"""From findings to messages: group exposed services into cases by owner, review every case
(fixed, stale, exposed again, due a follow-up or an escalation), and queue what must be sent.

It reads the campaign store's findings (open, reopened, fixed, with their times) and writes only
the notify tables. The decisions are cases.review and owner.decide; here they are applied.
The opt-out list (optout.py) holds over all of it: an opted-out address opens no case and is
named in no notice, and an opted-out contact is never a recipient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.policy import SMTP
from typing import Any

from sqlalchemy import select

from pacswatch.deception import DEFAULT_THRESHOLD, effective, is_trap
from pacswatch.findings.lifecycle import OPTED_OUT
from pacswatch.mailaddr import AddressError
from pacswatch.notify import cases as C
from pacswatch.notify import outbox as O
from pacswatch.notify.exposure import Exposure, from_finding
from pacswatch.notify.optout import OptOuts
from pacswatch.notify.render import Renderer, Sender, build_email
from pacswatch.notify.store import VALUES_PER_QUERY, NotifyStore
from pacswatch.notify.tokens import VerifyLinks

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
    # Findings judged traps at or above this confidence (deception.py) are not notified.
    deception_threshold: float = DEFAULT_THRESHOLD
    verify: VerifyLinks | None = None  # a verify link per case in each notice ([web] in the config)


@dataclass
class Planned:
    """What one pass decided: transitions applied, messages queued (or, in a dry run, built)."""

    created: list[int] = field(default_factory=list)
    transitions: list[tuple[int, C.Transition]] = field(default_factory=list)
    messages: list[O.OutboxMessage] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    no_contact: list[int] = field(default_factory=list)
    unattributed: int = 0
    suppressed: list[tuple[int, str]] = field(default_factory=list)  # (case, why): no notice (opted out, nothing to say)
    cancelled: list[tuple[str, str]] = field(default_factory=list)  # (message key, why): queued, then opted out
    bad_recipients: list[tuple[int, str]] = field(default_factory=list)  # (case, why): not one usable address
    # Findings left out as traps (deception.py), each as (ip, port, verdict, confidence, why).
    traps: list[tuple[str, int, str, float, str]] = field(default_factory=list)
    # Findings a person marked a false positive or suppressed (findings/triage.py), as (ip, port, verdict, why).
    triaged: list[tuple[str, int, str, str]] = field(default_factory=list)


def split_traps(findings: Iterable[dict[str, Any]], threshold: float
                ) -> tuple[list[dict[str, Any]], list[tuple[str, int, str, float, str]]]:
    """Findings (Repository.findings() rows) to notify, and those left out as traps: a deception
    verdict at or above `threshold`, or an analyst's 'honeypot' (an analyst's 'real' keeps one in)."""
    kept, traps = [], []
    for f in findings:
        override = f.get("deception_override")
        if is_trap(f.get("deception_verdict"), f.get("deception_confidence"), override, threshold):
            verdict, confidence = effective(f.get("deception_verdict"), f.get("deception_confidence"), override)
            why = (f"marked a honeypot by {f.get('override_by') or 'an analyst'}: {f.get('override_reason') or ''}"
                   if override == "honeypot" else
                   f"judged {verdict} with confidence {confidence:.2f} >= [notify] deception_threshold {threshold:g}")
            traps.append((f["ip"], int(f["port"]), str(verdict), confidence, why))
        else:
            kept.append(f)
    return kept, traps


def load_exposures(engine, findings: Iterable[dict[str, Any]]) -> dict[tuple[str, int], Exposure]:
    """Findings (Repository.findings() rows) as Exposures, with protocol facts from their latest
    observation's record (counts and facts only: see exposure.py)."""
    from pacswatch.store.tables import observations

    findings = list(findings)
    ids = [f["last_observation_id"] for f in findings if f.get("last_observation_id")]
    records: dict[object, dict] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), VALUES_PER_QUERY):
            chunk = ids[start:start + VALUES_PER_QUERY]
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
    assert e.last_seen is not None  # an exposure comes from a finding or a record: both were seen
    return C.ServiceView(e.ip, e.port, e.exposed, e.last_seen, e.severity)


def build_message(case: C.Case, kind: str, exposures: list[Exposure], recipient: str, *, settings: Settings,
                  renderer: Renderer, now: datetime) -> O.OutboxMessage:
    seq = case.followups + 1 if kind == C.FOLLOWUP else 1
    key = O.message_key(case.stored_id, case.round, kind, seq, recipient)
    verify_url = settings.verify.url(case.stored_id, now) if settings.verify is not None else None
    rendered = renderer.render(kind, case, exposures, sender=settings.sender, owner_name=case.owner_name,
                               followup_number=seq, verify_url=verify_url)
    email = build_email(rendered, sender=settings.sender, recipient=recipient, key=key, at=now, case_id=case.id)
    raw = email.as_bytes(policy=SMTP_POLICY)
    return O.OutboxMessage(key, case.stored_id, kind, seq, case.round, recipient, rendered.subject, raw, now, now)


def sync_cases(store: NotifyStore, exposures: dict[tuple[str, int], Exposure], now: datetime, plan: Planned,
               optouts: OptOuts | None = None) -> None:
    """Every exposed, attributed service into its owner's case (a new case when the owner has
    none open or fixed; a closed case is never reused). An opted-out address opens nothing."""
    attributions = store.attributions()
    by_owner: dict[str, C.Case] = {}
    case: C.Case | None
    for case in store.cases():
        if case.state != C.CLOSED:
            by_owner[case.owner_key] = case  # the latest per owner
    owned: list[tuple[str, int, str]] = []  # (ip, port, owner key)
    to_open: dict[str, tuple[C.Case, C.Transition]] = {}  # new cases, in the order they are needed
    for (ip, port), e in sorted(exposures.items()):
        if not e.exposed or (optouts is not None and optouts.address_reason(ip) is not None):
            continue
        a = attributions.get(ip)
        if a is None:
            plan.unattributed += 1
            continue
        if a["owner_key"] not in by_owner and a["owner_key"] not in to_open:
            to_open[a["owner_key"]] = C.open_case(a["owner_key"], a["owner_name"], now)
        owned.append((ip, port, a["owner_key"]))
    # One transaction for the new cases and one for the members, not one per case and service.
    for key, case in zip(to_open, store.create_cases(to_open.values())):
        by_owner[key] = case
        plan.created.append(case.stored_id)
    store.assign_many([(ip, port, by_owner[key].stored_id) for ip, port, key in owned], now)


def opted_out(keys: Iterable[tuple[str, int]], exposures: dict[tuple[str, int], Exposure],
              optouts: OptOuts) -> list[tuple[str, int]]:
    """The services among `keys` that no notice may name: on the opt-out list, or closed as
    opted-out (until a scan after a lifted opt-out sees them again)."""
    return [k for k in keys if optouts.address_reason(k[0]) is not None
            or (k in exposures and exposures[k].status == OPTED_OUT)]


def without_optouts(attribution: dict[str, Any], optouts: OptOuts) -> dict[str, Any]:
    """An attribution whose opted-out contact or escalation address is taken out of the routes."""
    return {**attribution, **{k: None for k in ("contact", "escalation")
                              if optouts.recipient_reason(attribution.get(k)) is not None}}


@dataclass(frozen=True)
class CaseReview:
    review: C.Review
    members: list[Exposure]  # the services a notice may name (opted-out ones left out)
    recipient: str | None  # for review.send, opt-outs applied
    refused: str | None = None  # why the recipient the routes chose may not be mailed


def review_case(case: C.Case, keys: list[tuple[str, int]], exposures: dict[tuple[str, int], Exposure],
                attributions: dict[str, dict[str, Any]], optouts: OptOuts, now: datetime,
                policy: C.Policy) -> CaseReview:
    """One case's review under the opt-out list, given its services (`keys`, as
    NotifyStore.services_of gives them): its opted-out services are not members (they neither
    keep it open nor count as fixed); a case whose every service is opted out closes."""
    excluded = opted_out(keys, exposures, optouts)
    if keys and len(excluded) == len(keys):
        closed, t = C.close(case, now, f"opted-out: every service of the case ({len(keys)}) is on the opt-out "
                                       "list or closed as opted-out")
        return CaseReview(C.Review(closed, (t,)), [], None)
    members = [exposures[k] for k in keys if k in exposures and k not in excluded]
    if keys and not members:
        # Every service is left out of this pass (a trap, a false positive, a suppression: see
        # service.notify): the case waits as it is. Reviewed without them it would close as if
        # its services had moved to another owner, and a suppression ending would open a new one.
        return CaseReview(C.Review(case), [], None)
    member_attributions = [attributions[ip] for ip in {e.ip for e in members} if ip in attributions]
    contact, escalation = routes([without_optouts(a, optouts) for a in member_attributions])
    review = C.review(case, [service_view(e) for e in members], now, policy, can_escalate=escalation is not None)
    if review.send is None:
        return CaseReview(review, members, None)
    recipient = escalation if review.send == C.ESCALATION else contact
    refused = None
    if recipient is None:
        wanted_contact, wanted_escalation = routes(member_attributions)
        wanted = wanted_escalation if review.send == C.ESCALATION else wanted_contact
        refused = optouts.recipient_reason(wanted)
    return CaseReview(review, members, recipient, refused)


def open_cases(store: NotifyStore, exposures: dict[tuple[str, int], Exposure], *, now: datetime,
               policy: C.Policy) -> Planned:
    """What `attribute` does to cases: every attributed exposed service into its owner's case
    (opened in state new), and each case reviewed as after a rescan (a fixed case exposed again
    opens a new round, in state new). Nothing is queued: that is `notify`'s."""
    plan = Planned()
    optouts = store.optouts()
    sync_cases(store, exposures, now, plan, optouts)
    attributions = store.attributions()
    services = store.services_by_case()
    for case in store.cases():
        if case.state == C.CLOSED:
            continue
        review = review_case(case, services.get(case.stored_id, []), exposures, attributions, optouts, now,
                             policy).review
        if review.transitions:
            store.save_case(review.case, review.transitions)
            plan.transitions += [(case.stored_id, t) for t in review.transitions]
    return plan


def plan_pass(store: NotifyStore, exposures: dict[tuple[str, int], Exposure], *, now: datetime, settings: Settings,
              renderer: Renderer | None = None, dry_run: bool = False) -> Planned:
    """One pass: sync cases, review each, queue messages (dry run: build them, queue nothing).
    The opt-out list is read once, here: a queued message it now forbids is cancelled first
    (not in a dry run), so that the pass can queue the notice again without what it removed."""
    renderer = renderer or Renderer()
    plan = Planned()
    optouts = store.optouts()
    if optouts and not dry_run:
        for msg in store.messages(states=[O.PENDING]):
            why = store.veto(msg, optouts)
            if why is not None and store.cancel(msg, now, why):
                plan.cancelled.append((msg.key, why))
    sync_cases(store, exposures, now, plan, optouts)
    attributions = store.attributions()
    services = store.services_by_case()
    for case in store.cases():
        if case.state == C.CLOSED:
            continue
        checked = review_case(case, services.get(case.stored_id, []), exposures, attributions, optouts, now,
                              settings.policy)
        review = checked.review
        if review.transitions:
            store.save_case(review.case, review.transitions)
            plan.transitions += [(case.stored_id, t) for t in review.transitions]
        if review.send is None:
            continue
        if checked.recipient is None:
            if checked.refused is not None:
                plan.suppressed.append((case.stored_id, checked.refused))
            else:
                plan.no_contact.append(case.stored_id)
            continue
        open_members = [e for e in checked.members if e.exposed]
        if not settings.sender.list_protected and all(e.protected for e in open_members):
            # The notice would list nothing ("0 services"): every service refuses unknown callers
            # or asks for a login, and the configuration leaves those out of notices.
            plan.suppressed.append((case.stored_id, f"its {len(open_members)} service(s) all refuse unknown callers or "
                                             "ask for a login, and [notify] list_protected = false leaves them out"))
            continue
        try:
            msg = build_message(review.case, review.send, open_members, checked.recipient, settings=settings,
                                renderer=renderer, now=now)
        except AddressError as exc:  # a contact with a CR/LF or two addresses in one: skip it, say why
            plan.bad_recipients.append((case.stored_id, str(exc)))
            continue
        plan.messages.append(msg)
        if not dry_run and store.enqueue(msg):
            plan.queued.append(msg.key)
    return plan
