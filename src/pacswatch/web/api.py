"""/api/v1: findings, endpoints, cases and scans as JSON, for `Authorization: Bearer TOKEN`
(`pacswatch users token NAME`); read-only. The schema is at /api/v1/openapi.json, the page that
reads it at /api/docs (Swagger UI, vendored in static/swagger).

The findings take the same filters as /findings (queries_findings.FindingFilter) and the same
keyset pages: `next` is the query string of the next page, or null on the last one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from pacswatch.store.notify_tables import case_services, cases
from pacswatch.store.tables import scans
from pacswatch.web.accounts import User
from pacswatch.web.auth import CurrentUser, api_user, settings_of
from pacswatch.web.db import reading
from pacswatch.web.queries_endpoint import finding_endpoint, load, parse_endpoint
from pacswatch.web.pages_findings import filtered_page
from pacswatch.web.templating import render

router = APIRouter(prefix="/api/v1", tags=["api v1"])
docs_router = APIRouter(include_in_schema=False)
ApiUser = Annotated[User, Depends(api_user)]
MAX_LIST = 200


class Finding(BaseModel):
    id: int
    ip: str
    port: int
    severity: str
    status: str
    service: str | None = None
    transport: str | None = None
    product: str | None = None
    product_version: str | None = None
    studies: int | None = Field(None, description="studies counted (a count, never their content)")
    patients: int | None = Field(None, description="patients counted (a count, never their content)")
    first_seen: datetime
    last_seen: datetime
    fixed_at: datetime | None = None
    reopen_count: int = 0
    owner: str | None = None
    case_id: int | None = None
    triage: str | None = Field(None, description="a person's verdict: false positive, suppressed until ...")


class FindingsPage(BaseModel):
    total: int = Field(description="findings that match the filters, counted up to 10,001 (10,001 means more "
                                   "than 10,000)")
    findings: list[Finding]
    next: str | None = Field(None, description="query string of the next page (keyset cursor), null on the last")


class TimelineEntry(BaseModel):
    at: datetime
    kind: str
    by: str
    text: str


class Facts(BaseModel):
    section: str
    facts: dict[str, Any]


class Endpoint(BaseModel):
    ip: str
    port: int
    finding: Finding | None = None
    status: str | None = Field(None, description="what the last look found")
    severity: str | None = None
    product: str | None = None
    reasons: list[str] = []
    facts: list[Facts] = Field([], description="the facts `pacswatch probe` prints, by section")
    owner: str | None = None
    case_id: int | None = None
    timeline: list[TimelineEntry]


class Case(BaseModel):
    id: int
    owner_key: str
    owner_name: str
    state: str
    round: int
    opened_at: datetime
    updated_at: datetime
    notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    fixed_at: datetime | None = None
    closed_at: datetime | None = None
    services: list[str] = Field([], description="ADDRESS:PORT of its services")


class Scan(BaseModel):
    id: int
    kind: str
    status: str
    operator: str | None = None
    plan_size: int
    done: int
    counts: dict[str, int]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


@router.get("/findings", response_model=FindingsPage, summary="Findings, filtered and paged")
def api_findings(request: Request, user: ApiUser,
                 severity: Annotated[list[str], Query(description="critical, high, medium, low")] = [],  # noqa: B006
                 status: Annotated[list[str], Query(description="active, open, reopened, fixed, opted-out")] = [],  # noqa: B006
                 product: str | None = None, port: int | None = None, owner: str | None = None,
                 network: Annotated[str | None, Query(description="a CIDR")] = None,
                 first_seen_from: str | None = None, first_seen_to: str | None = None,
                 last_seen_from: str | None = None, last_seen_to: str | None = None,
                 q: Annotated[str | None, Query(description="address prefix or part of the owner's name")] = None,
                 triage: Annotated[str | None, Query(description="none (no false positive or suppression in "
                                                                 "force), false-positive, suppressed")] = None,
                 sort: Annotated[str, Query(description="severity, last_seen, first_seen, address, port, product; "
                                                        "- first for descending")] = "severity",
                 cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50) -> FindingsPage:
    # The parameters are declared for the schema; the one parser of them is FindingFilter's.
    f, page = filtered_page(request)
    return FindingsPage(total=page.total, findings=[Finding(**r) for r in page.rows],
                        next=urlencode(f.query_items(cursor=page.next_cursor)) if page.next_cursor else None)


def _endpoint(request: Request, ip: str, port: int) -> Endpoint:
    with reading(request.app.state.engine) as conn:
        view = load(conn, ip, port, settings_of(request).clock())
    if not view.found:
        raise HTTPException(status_code=404, detail=f"nothing is known of {ip} port {port}")
    record = view.record
    finding = None
    if view.finding is not None:
        finding = Finding(**view.finding, **{k: (view.service or {}).get(k) for k in (
            "service", "transport", "product", "product_version", "studies", "patients")},
            owner=view.owner["owner_name"] if view.owner else None,
            case_id=view.case["id"] if view.case else None, triage=view.triage)
    return Endpoint(ip=ip, port=port, finding=finding, status=record.status if record else None,
                    severity=record.severity if record else None,
                    product=record.product.name if record and record.product else None,
                    reasons=list(record.reasons) if record else [],
                    facts=[Facts(section=title, facts={k: v for k, v in rows if v is not None})
                           for title, rows in view.facts],
                    owner=view.owner["owner_name"] if view.owner else None,
                    case_id=view.case["id"] if view.case else None,
                    timeline=[TimelineEntry(**e) for e in view.timeline if {"at", "kind", "by", "text"} <= set(e)])


@router.get("/findings/{finding_id}", response_model=Endpoint, summary="One finding, as its endpoint")
def api_finding(request: Request, finding_id: int, user: ApiUser) -> Endpoint:
    with reading(request.app.state.engine) as conn:
        where = finding_endpoint(conn, finding_id)
    if where is None:
        raise HTTPException(status_code=404, detail=f"there is no finding {finding_id}")
    return _endpoint(request, *where)


@router.get("/endpoints/{endpoint}", response_model=Endpoint, summary="One endpoint: ADDRESS:PORT")
def api_endpoint(request: Request, endpoint: str, user: ApiUser) -> Endpoint:
    return _endpoint(request, *parse_endpoint(endpoint))


def _cases(request: Request, *, case_id: int | None = None, state: str | None = None, after: int = 0,
           limit: int = 50) -> list[Case]:
    query = select(cases).order_by(cases.c.id).limit(limit)
    if case_id is not None:
        query = query.where(cases.c.id == case_id)
    else:
        query = query.where(cases.c.id > after)
    if state:
        query = query.where(cases.c.state == state)
    with reading(request.app.state.engine) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
        members: dict[int, list[str]] = {}
        for m in conn.execute(select(case_services).where(case_services.c.case_id.in_([r["id"] for r in rows]))
                              .order_by(case_services.c.ip, case_services.c.port)):
            members.setdefault(m.case_id, []).append(f"[{m.ip}]:{m.port}" if ":" in m.ip else f"{m.ip}:{m.port}")
    return [Case(**{k: r[k] for k in Case.model_fields if k in r}, services=members.get(r["id"], [])) for r in rows]


@router.get("/cases", response_model=list[Case], summary="Cases, by id (after=ID for the next page)")
def api_cases(request: Request, user: ApiUser, state: str | None = None, after: int = 0,
              limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50) -> list[Case]:
    return _cases(request, state=state, after=after, limit=limit)


@router.get("/cases/{case_id}", response_model=Case, summary="One case")
def api_case(request: Request, case_id: int, user: ApiUser) -> Case:
    found = _cases(request, case_id=case_id)
    if not found:
        raise HTTPException(status_code=404, detail=f"there is no case {case_id}")
    return found[0]


def _scans(request: Request, *, scan_id: int | None = None, before: int | None = None, limit: int = 50) -> list[Scan]:
    query = select(scans).order_by(scans.c.id.desc()).limit(limit)
    if scan_id is not None:
        query = query.where(scans.c.id == scan_id)
    elif before is not None:
        query = query.where(scans.c.id < before)
    with reading(request.app.state.engine) as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    # Not the parameters or command: they may name files and options of the operator's host.
    return [Scan(**{k: r[k] for k in Scan.model_fields if k in r}) for r in rows]


@router.get("/scans", response_model=list[Scan], summary="Scans, newest first (before=ID for the next page)")
def api_scans(request: Request, user: ApiUser, before: int | None = None,
              limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50) -> list[Scan]:
    return _scans(request, before=before, limit=limit)


@router.get("/scans/{scan_id}", response_model=Scan, summary="One scan")
def api_scan(request: Request, scan_id: int, user: ApiUser) -> Scan:
    found = _scans(request, scan_id=scan_id)
    if not found:
        raise HTTPException(status_code=404, detail=f"there is no scan {scan_id}")
    return found[0]


@docs_router.get("/api/docs")
def api_docs(request: Request, user: CurrentUser):
    """Swagger UI on this server's own copy (static/swagger), started by static/api-docs.js."""
    return render(request, "api_docs.html", user=user)
