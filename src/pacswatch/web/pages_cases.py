"""/cases and /cases/{id}: a case's state, owner, contacts with where each was learned, its
services, the messages sent (the outbox's own bytes, shown as text), its history, and the
actions a person takes on it.

Every action goes through the code the command line uses: acknowledge and close are
notify.cases.acknowledge / close saved by NotifyStore.save_case (`pacswatch case ID --ack/--close`);
"send follow-up now" and "escalate" are notify.manual.send_now (workflow.build_message, the
outbox, delivery.deliver: `pacswatch notify`'s path). Each also writes an event with the
person's name (events.record_event), in the same transaction as the change where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select

from pacswatch.notify import cases as C
from pacswatch.notify import config as configuration
from pacswatch.notify.manual import NotSendable, send_now
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.workflow import load_exposures
from pacswatch.notify.smtp import SendingDisabled, readable
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository
from pacswatch.text import clean
from pacswatch.web.accounts import User
from pacswatch.web.auth import check_csrf, current_user, require_role, settings_of
from pacswatch.store.notify_tables import case_services, cases
from pacswatch.web.db import reading, writing
from pacswatch.web.events import record_event
from pacswatch.web.templating import render

router = APIRouter()
SHOWN = 200  # cases on /cases: the page never ships the whole table
SERVICES_SHOWN = 500  # services on a case's page (its notice's CSV lists them all)
# Who may read (any logged-in user) and who may change (analysts and admins): viewers get 403.
Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require_role("analyst"))]
MAX_NOTE = 2000


@dataclass(frozen=True)
class ContactView:
    address: str
    role: str  # the route: contact | escalation
    how: str  # the attribution's role for it (security.txt, abuse, owner ...)
    sources: tuple[str, ...]  # where the facts behind it came from
    addresses: tuple[str, ...]  # the case's addresses it was chosen for


def contacts_of(attributions: list[dict[str, Any]]) -> list[ContactView]:
    """The contacts and escalation routes the case's attributions chose, each with the sources
    of the facts it was decided from (pure)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for a in sorted(attributions, key=lambda a: (-a["confidence"], a["ip"])):
        # Why this contact (the decision's first reason: "local contacts table: ...", "security.txt
        # of ... names ...") and the sources of the facts it was decided from.
        reasons = [str(r) for r in (a.get("reasons") or [])[:1]]
        sources = reasons + sorted({str(f.get("source")) for f in a.get("facts") or [] if f.get("kind") != "error"})
        for route, address, how in (("contact", a.get("contact"), a.get("contact_role") or "contact"),
                                    ("escalation", a.get("escalation"), "escalation")):
            if not address:
                continue
            item = seen.setdefault((route, address), {"how": how, "sources": [], "addresses": []})
            item["sources"] += [s for s in sources if s not in item["sources"]]
            item["addresses"].append(a["ip"])
    return [ContactView(address, route, v["how"], tuple(v["sources"]), tuple(v["addresses"]))
            for (route, address), v in seen.items()]


def case_exposures(engine, keys: list[tuple[str, int]]) -> dict[tuple[str, int], Exposure]:
    """The case's services as notices see them (workflow.load_exposures), read for its
    addresses only: a case page must not load every finding of the database."""
    rows = Repository(engine).findings(ips=[ip for ip, _ in keys])
    wanted = set(keys)
    return {k: e for k, e in load_exposures(engine, rows).items() if k in wanted}


@router.get("/cases")
def case_list(request: Request, user: Reader, state: str = ""):
    """The cases, open ones first, most recently changed first: the first SHOWN of them (a
    state filter narrows), with their services counted by the database."""
    engine = request.app.state.engine
    states = [state] if state in C.STATES else list(C.STATES)
    count = (select(func.count()).select_from(case_services)
             .where(case_services.c.case_id == cases.c.id).scalar_subquery())
    query = (select(cases.c.id, count.label("services")).where(cases.c.state.in_(states))
             .order_by(cases.c.state.in_(C.OPEN_STATES).desc(), cases.c.updated_at.desc(), cases.c.id.desc())
             .limit(SHOWN))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    by_id = {c.stored_id: c for c in NotifyStore(engine).cases(ids=[r.id for r in rows])}
    # Which services are opted out is on each case's page: matching every service of 200 cases
    # against the opt-out list costs more than the rest of this page.
    return render(request, "cases.html", cases=[by_id[r.id] for r in rows if r.id in by_id],
                  services={r.id: r.services for r in rows}, states=C.STATES,
                  state=state if state in C.STATES else "", shown=SHOWN)


def _case_or_404(store: NotifyStore, case_id: int) -> C.Case:
    case = store.case(case_id)
    if case is None:
        raise HTTPException(status_code=404, detail=f"there is no case {case_id}")
    return case


@router.get("/cases/{case_id}")
def case_page(request: Request, user: Reader, case_id: int):
    engine = request.app.state.engine
    store = NotifyStore(engine)
    case = _case_or_404(store, case_id)
    every = store.services_of(case_id)
    keys = every[:SERVICES_SHOWN]  # a provider's case can hold thousands: the page shows the first
    exposures = case_exposures(engine, keys)
    opted = set(store.opted_out_services([case_id]).get(case_id, []))
    attributions = store.attributions(sorted({ip for ip, _ in keys}))
    messages = [{"m": m, "text": readable(m.raw)} for m in reversed(store.messages(case_id=case_id))]
    return render(request, "case.html", case=case, services=[(k, exposures.get(k), k in opted) for k in keys],
                  more=len(every) - len(keys), contacts=contacts_of(list(attributions.values())),
                  history=list(reversed(store.history(case_id))), messages=messages,
                  may_change=user.may("analyst"), allowed=C.ALLOWED[case.state])


def _back(case_id: int) -> RedirectResponse:
    """To the case's page, whose history (newest first) says what the action did."""
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.post("/cases/{case_id}/acknowledge", dependencies=[Depends(check_csrf)])
def acknowledge(request: Request, user: Analyst, case_id: int, note: str = Form("")):
    return _transition(request, case_id, user, "acknowledge", note)


@router.post("/cases/{case_id}/close", dependencies=[Depends(check_csrf)])
def close(request: Request, user: Analyst, case_id: int, why: str = Form("")):
    return _transition(request, case_id, user, "close", why)


def _transition(request: Request, case_id: int, user: User, action: str, text: str) -> Any:
    settings = settings_of(request)
    store = NotifyStore(request.app.state.engine)
    case = _case_or_404(store, case_id)
    now = settings.clock()
    text = clean(text, limit=MAX_NOTE)
    try:
        if action == "acknowledge":
            updated, transition = C.acknowledge(case, now, text)
        else:
            updated, transition = C.close(case, now, text or f"closed by {user.name}")
    except C.TransitionError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    with writing(request.app.state.engine) as conn:
        store.save_case(updated, (transition,), conn=conn)
        record_event(conn, user, f"{action}d the case" + (f": {text}" if text else ""), now, case_id=case_id)
    return _back(case_id)


@router.post("/cases/{case_id}/reply", dependencies=[Depends(check_csrf)])
def note_reply(request: Request, user: Analyst, case_id: int, reply: str = Form(...)):
    """A reply the owner sent (by mail, by phone), noted by hand: a line in the history."""
    store = NotifyStore(request.app.state.engine)
    _case_or_404(store, case_id)
    text = clean(reply, limit=MAX_NOTE)
    if not text.strip():
        raise HTTPException(status_code=422, detail="the reply is empty")
    with writing(request.app.state.engine) as conn:
        record_event(conn, user, f"reply noted: {text}", settings_of(request).clock(), case_id=case_id)
    return _back(case_id)


@router.post("/cases/{case_id}/send", dependencies=[Depends(check_csrf)])
def send(request: Request, user: Analyst, case_id: int, kind: str = Form(...)):
    settings = settings_of(request)
    engine = request.app.state.engine
    store = NotifyStore(engine)
    _case_or_404(store, case_id)
    try:
        config = configuration.load(str(settings.notify_config) if settings.notify_config else None)
        exposures = case_exposures(engine, store.services_of(case_id))
        sent = send_now(store, case_id, kind, exposures, config=config, clock=settings.clock)
    except (NotSendable, SendingDisabled) as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except ValueError as exc:  # the configuration
        raise HTTPException(status_code=409, detail=str(exc)) from None
    key = sent.message.key
    outcome = ("sent" if key in sent.delivery.sent else
               "deferred (rate limit or suppression window)" if key in sent.delivery.deferred else
               f"not sent yet: {clean(sent.delivery.errors.get(key, 'queued'), limit=300)}")
    with writing(engine) as conn:
        record_event(conn, user, f"asked for the {kind} to {sent.message.recipient} now: {outcome}",
                     settings.clock(), case_id=case_id)
    return _back(case_id)
