"""/owners (the local contacts table, and the owners attribution found) and /optouts (the
opt-out list, the requests from the public form, pending ones first, and an analyst's form
that adds an entry through campaign.optouts.add_optout, as `pacswatch optout add` does)."""

from __future__ import annotations

from typing import Annotated

from collections import Counter

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from pacswatch.campaign.optouts import add_optout
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository
from pacswatch.text import clean
from pacswatch.web import optout_requests
from pacswatch.web.accounts import User
from pacswatch.web.auth import check_csrf, current_user, require_role, settings_of
from pacswatch.web.templating import render

router = APIRouter()
# Who may read (any logged-in user) and who may change (analysts and admins): viewers get 403.
Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require_role("analyst"))]


@router.get("/owners")
def owners_page(request: Request, user: Reader):
    store = NotifyStore(request.app.state.engine)
    attributions = store.attributions()
    found = Counter((a["owner_key"], a["owner_name"]) for a in attributions.values())
    cases = {c.owner_key: c for c in store.cases()}  # the latest case per owner (ordered by id)
    attributed = [{"key": key, "name": name, "addresses": n, "case": cases.get(key)}
                  for (key, name), n in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))]
    return render(request, "owners.html", local=store.owners(), attributed=attributed)


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
