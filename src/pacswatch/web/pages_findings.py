"""/findings (filters, sort, keyset pages, CSV and JSON downloads of the filtered set),
/findings/{id} and /endpoints/{ip}:{port} (one endpoint as a person reads it), and the actions
on a finding: rescan now, false positive with a reason, suppress until a date, clear.

"Rescan now" makes the service due (services.next_due = now): the next `pacswatch run` rescans
it first; nothing is probed from the web server. Every action is an event with the user's name
(events.record_event), in the same transaction as the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from pacswatch.notify.csvexport import csv_text
from pacswatch.web.auth import Analyst, CurrentUser, check_csrf, settings_of
from pacswatch.web.db import reading, writing
from pacswatch.web.events import record_event
from pacswatch.web.queries_endpoint import case_of, endpoint_label, finding_endpoint, load, parse_endpoint, rescan_now
from pacswatch.web.queries_findings import (
    COUNT_CAP,
    SEVERITIES,
    SORTS,
    FilterError,
    FindingFilter,
    find_page,
    iterate,
)
from pacswatch.web.templating import render

router = APIRouter()

# The columns of a download: the CLI's `findings --format csv` columns, then who and what case.
EXPORT_COLUMNS = ("id", "ip", "port", "severity", "status", "service", "transport", "product", "product_version",
                  "studies", "patients", "first_seen", "last_seen", "fixed_at", "reopen_count", "owner", "case_id",
                  "triage")


def _filter(request: Request) -> FindingFilter:
    try:
        return FindingFilter.from_query(request.query_params)
    except FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


def filtered_page(request: Request):
    """The request's filter and its page of findings (the page and /api/v1/findings alike); a
    filter the query cannot be is a 400 that names the problem."""
    f = _filter(request)
    try:
        with reading(request.app.state.engine) as conn:
            return f, find_page(conn, f, now=settings_of(request).clock())
    except FilterError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None


@router.get("/findings")
def findings_page(request: Request, user: CurrentUser):
    f, page = filtered_page(request)
    return render(request, "findings.html", user=user, f=f, page=page, severities=SEVERITIES, sorts=SORTS,
                  count_cap=COUNT_CAP,
                  next_link=f"/findings?{urlencode(f.query_items(cursor=page.next_cursor))}" if page.next_cursor
                  else None,
                  first_link=f"/findings?{urlencode(f.query_items())}" if f.cursor else None,
                  csv_link=f"/findings.csv?{urlencode(f.query_items())}",
                  json_link=f"/findings.json?{urlencode(f.query_items())}",
                  sort_link=lambda key: f"/findings?{urlencode(f.query_items(sort=key, descending=_flip(f, key)))}")


def _flip(f: FindingFilter, key: str) -> bool:
    """A column header's link: the same column again reverses the order; a new one starts
    with its natural order (newest first for times)."""
    if key == f.sort:
        return not f.descending
    return key in ("last_seen", "first_seen")


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


def _rows(request: Request, f: FindingFilter) -> Iterator[dict]:
    # One read transaction for the whole download: one state of the database, batch by batch.
    with reading(request.app.state.engine) as conn:
        yield from iterate(conn, f, now=settings_of(request).clock())


def _csv_chunks(request: Request, f: FindingFilter) -> Iterator[str]:
    """CSV through the CLI's one writer (notify/csvexport.csv_text: every cell neutralised), a
    thousand rows a chunk: the header once, then each chunk's rows without it."""
    yield csv_text(EXPORT_COLUMNS, [])
    batch: list[list[object]] = []
    for row in _rows(request, f):
        batch.append([_plain(row.get(c)) for c in EXPORT_COLUMNS])
        if len(batch) == 1000:
            yield csv_text(EXPORT_COLUMNS, batch).split("\r\n", 1)[1]
            batch = []
    if batch:
        yield csv_text(EXPORT_COLUMNS, batch).split("\r\n", 1)[1]


def _json_chunks(request: Request, f: FindingFilter) -> Iterator[str]:
    yield "["
    first = True
    for row in _rows(request, f):
        yield ("\n" if first else ",\n") + json.dumps({c: _plain(row.get(c)) for c in EXPORT_COLUMNS})
        first = False
    yield "\n]\n"


def _download_name(kind: str) -> str:
    return f"pacswatch-findings-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.{kind}"


@router.get("/findings.csv")
def findings_csv(request: Request, user: CurrentUser):
    f = _filter(request)
    return StreamingResponse(_csv_chunks(request, f), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{_download_name("csv")}"'})


@router.get("/findings.json")
def findings_json(request: Request, user: CurrentUser):
    f = _filter(request)
    return StreamingResponse(_json_chunks(request, f), media_type="application/json",
                             headers={"Content-Disposition": f'attachment; filename="{_download_name("json")}"'})


# --- one endpoint ------------------------------------------------------------------------------


def endpoint_path(ip: str, port: int) -> str:
    return f"/endpoints/[{ip}]:{port}" if ":" in ip else f"/endpoints/{ip}:{port}"


def _show(request: Request, user, ip: str, port: int):
    with reading(request.app.state.engine) as conn:
        view = load(conn, ip, port, settings_of(request).clock())
    if not view.found:
        raise HTTPException(status_code=404, detail=f"nothing is known of {ip} port {port}")
    return render(request, "endpoint.html", user=user, view=view, may_change=user.may("analyst"),
                  endpoint_link=endpoint_path(ip, port))


@router.get("/findings/{finding_id}")
def finding_page(request: Request, finding_id: int, user: CurrentUser):
    with reading(request.app.state.engine) as conn:
        where = finding_endpoint(conn, finding_id)
    if where is None:
        raise HTTPException(status_code=404, detail=f"there is no finding {finding_id}")
    return _show(request, user, *where)


@router.get("/endpoints/{endpoint}")
def endpoint_page(request: Request, endpoint: str, user: CurrentUser):
    return _show(request, user, *parse_endpoint(endpoint))


# --- actions -----------------------------------------------------------------------------------


def _finding_or_404(conn, finding_id: int) -> tuple[str, int]:
    where = finding_endpoint(conn, finding_id)
    if where is None:
        raise HTTPException(status_code=404, detail=f"there is no finding {finding_id}")
    return where


WORDS = {"rescan": "rescan requested", "false-positive": "marked a false positive", "suppressed": "suppressed",
         "cleared": "verdict cleared"}


def _act(request: Request, finding_id: int, user, action: str, reason: str = "",
         until: datetime | None = None) -> RedirectResponse:
    """One action on a finding, its event with the user's name, and, when the finding's service
    is in a case, a line in the case's history too (what `pacswatch case ID` shows), all in
    one transaction."""
    now = settings_of(request).clock()
    with writing(request.app.state.engine) as conn:
        ip, port = _finding_or_404(conn, finding_id)
        if action == "rescan" and not rescan_now(conn, ip, port, now):
            raise HTTPException(status_code=409, detail="no service is known there to rescan")
        record_event(conn, user, reason, now, finding_id=finding_id, action=action, until=until)
        if (case_id := case_of(conn, ip, port)) is not None:
            what = f"{endpoint_label(ip, port)} {WORDS[action]}" + (f" until {until:%Y-%m-%d}" if until else "")
            record_event(conn, user, what + (f": {reason}" if reason else ""), now, case_id=case_id)
    return RedirectResponse(f"/findings/{finding_id}", status_code=303)


@router.post("/findings/{finding_id}/rescan", dependencies=[Depends(check_csrf)])
def rescan(request: Request, finding_id: int, user: Analyst):
    return _act(request, finding_id, user, "rescan", "due now: the next `pacswatch run` rescans it")


@router.post("/findings/{finding_id}/false-positive", dependencies=[Depends(check_csrf)])
def false_positive(request: Request, finding_id: int, user: Analyst, reason: str = Form("")):
    if not reason.strip():
        raise HTTPException(status_code=400, detail="say why it is a false positive")
    return _act(request, finding_id, user, "false-positive", reason.strip())


@router.post("/findings/{finding_id}/suppress", dependencies=[Depends(check_csrf)])
def suppress(request: Request, finding_id: int, user: Analyst, until: str = Form(""), reason: str = Form("")):
    try:
        day = date.fromisoformat(until)
    except ValueError:
        raise HTTPException(status_code=400, detail="give the date until which to suppress it (YYYY-MM-DD)") from None
    end = datetime.combine(day, time.min, tzinfo=timezone.utc)
    if end <= settings_of(request).clock():
        raise HTTPException(status_code=400, detail="the date must be in the future")
    return _act(request, finding_id, user, "suppressed", reason.strip(), until=end)


@router.post("/findings/{finding_id}/clear", dependencies=[Depends(check_csrf)])
def clear(request: Request, finding_id: int, user: Analyst):
    return _act(request, finding_id, user, "cleared")
