"""/owners (the local contacts table, and the owners attribution found) and /optouts (the
opt-out list, the requests from the public form, pending ones first, and an analyst's form
that adds an entry through campaign.optouts.add_optout, as `pacswatch optout add` does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select

from pacswatch.campaign.optouts import add_optout
from pacswatch.notify.store import NotifyStore
from pacswatch.store.notify_tables import attributions, cases
from pacswatch.store.repository import Repository
from pacswatch.text import clean
from pacswatch.web import optout_requests
from pacswatch.web.accounts import User
from pacswatch.web.auth import check_csrf, current_user, require_role, settings_of
from pacswatch.web.db import reading
from pacswatch.web.templating import render

router = APIRouter()
SHOWN = 200  # owners on /owners: the page never ships the whole table
# Who may read (any logged-in user) and who may change (analysts and admins): viewers get 403.
Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require_role("analyst"))]


@router.get("/owners")
def owners_page(request: Request, user: Reader):
    """The local contacts table, and the owners attribution found, most addresses first (the
    first SHOWN; counted by the database), each with its latest case."""
    engine = request.app.state.engine
    store = NotifyStore(engine)
    query = (select(attributions.c.owner_key, func.min(attributions.c.owner_name).label("name"),
                    func.count().label("addresses"))
             .group_by(attributions.c.owner_key).order_by(func.count().desc(), attributions.c.owner_key)
             .limit(SHOWN))
    latest = (select(cases.c.owner_key, func.max(cases.c.id).label("case_id")).group_by(cases.c.owner_key))
    with reading(engine) as conn:
        found = conn.execute(query).all()
        keys = [r.owner_key for r in found]
        case_of = dict(conn.execute(latest.where(cases.c.owner_key.in_(keys))).all()) if keys else {}
    by_id = {c.stored_id: c for c in store.cases(ids=list(case_of.values()))} if case_of else {}
    attributed = [{"key": r.owner_key, "name": r.name, "addresses": r.addresses,
                   "case": by_id.get(case_of.get(r.owner_key, -1))} for r in found]
    return render(request, "owners.html", local=store.owners(), attributed=attributed, shown=SHOWN)


@router.get("/optouts")
def optouts_page(request: Request, user: Reader):
    engine = request.app.state.engine
    return render(request, "optouts.html", entries=Repository(engine).optouts(),
                  requests=optout_requests.requests(engine), may_change=user.may("analyst"), error=None)


@router.post("/optouts", dependencies=[Depends(check_csrf)])
def add(request: Request, user: Analyst, network: str = Form(...), contact: str = Form(...), note: str = Form("")):
    engine = request.app.state.engine
    contact, note = clean(contact, limit=320), clean(note, limit=2000)
    if not contact.strip():
        raise HTTPException(status_code=422, detail="say who asked (a contact)")
    try:
        add_optout(Repository(engine), network, contact, note=note or None, added_by=f"{user.name} (dashboard)",
                   at=settings_of(request).clock())
    except ValueError as exc:
        return render(request, "optouts.html", status_code=422, entries=Repository(engine).optouts(),
                      requests=optout_requests.requests(engine), may_change=True, error=str(exc))
    return RedirectResponse("/optouts", status_code=303)
