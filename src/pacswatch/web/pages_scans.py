"""/scans: running and finished scans with their progress (the table is a fragment that htmx
reloads every two seconds while a scan runs; without JavaScript, reloading the page does the
same), and the stop and resume buttons (web/scanproc.py: SIGINT to a scan of this machine; a
resume is `pacswatch scan --resume ID` in its own process)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse

from pacswatch.campaign.scanrun import check_resumable, shown_status
from pacswatch.store.errors import ScanNotResumable
from pacswatch.store.repository import Repository
from pacswatch.web import scanproc
from pacswatch.web.accounts import User
from pacswatch.web.auth import check_csrf, current_user, require_role, settings_of
from pacswatch.web.templating import render

router = APIRouter()
# Who may read (any logged-in user) and who may change (analysts and admins): viewers get 403.
Reader = Annotated[User, Depends(current_user)]
Analyst = Annotated[User, Depends(require_role("analyst"))]
SHOWN = 50  # the latest scans; the page never ships the whole table


def scan_rows(repo: Repository, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for scan in repo.scans(SHOWN):
        size = scan["plan_size"] or 0
        rows.append({**scan, "shown": shown_status(scan, now=now),
                     "percent": min(100.0, 100.0 * scan["done"] / size) if size else 100.0,
                     "answered": sum(n for status, n in (scan["counts"] or {}).items()
                                     if status not in ("connection-refused", "connection-timeout", "blocked"))})
    return rows


def _page_context(request: Request) -> dict[str, Any]:
    rows = scan_rows(Repository(request.app.state.engine), settings_of(request).clock())
    # Every 2 s while a scan runs; every 15 s otherwise, so that a scan started elsewhere (or a
    # resume whose process has not claimed its scan yet) shows up without a reload.
    return {"scans": rows, "poll": "2s" if any(r["shown"] == "running" for r in rows) else "15s"}


@router.get("/scans")
def scans_page(request: Request, user: Reader):
    return render(request, "scans.html", may_change=user.may("analyst"), **_page_context(request))


@router.get("/scans/table")
def scans_table(request: Request, user: Reader):
    """The table alone, for htmx's polling."""
    return render(request, "_scans_table.html", may_change=user.may("analyst"), **_page_context(request))


@router.post("/scans/{scan_id}/stop", dependencies=[Depends(check_csrf)])
def stop(request: Request, user: Analyst, scan_id: int):
    scan = Repository(request.app.state.engine).scan(scan_id)
    if scan is None:
        raise HTTPException(status_code=404, detail=f"there is no scan {scan_id}")
    try:
        scanproc.stop(scan)
    except ValueError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    return RedirectResponse("/scans", status_code=303)


@router.post("/scans/{scan_id}/resume", dependencies=[Depends(check_csrf)])
def resume(request: Request, user: Analyst, scan_id: int):
    engine = request.app.state.engine
    try:
        check_resumable(Repository(engine), scan_id)  # the scan's own refusal, before a process starts
    except ScanNotResumable as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    scanproc.start(["scan", "--resume", str(scan_id), "--quiet"], engine, name=f"scan-{scan_id}-resume")
    return RedirectResponse("/scans", status_code=303)
