"""The public pages, for anyone and without login: /about (who runs this scanner and how it
announces itself), /optout (ask not to be scanned: confirmed by a link mailed to a contact we
already know for the network, web/optout_requests.py) and /verify/{token} (the link a notice
carries: look at that case's services again and say, for them only, which still answer).

Nothing here shows a finding of anyone: /about and /optout show nothing from the database, and
/verify shows the endpoints of the one case its signed token names, with "still reachable" or
"closed" and the time of the look; no product, no counts. Each address may ask a page
PUBLIC_PER_MINUTE times a minute and send the opt-out form OPTOUT_PER_HOUR times an hour.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from sqlalchemy import insert, select, update

from pacswatch.campaign.scanrun import process_alive
from pacswatch.identity import Identity
from pacswatch.notify import config as configuration
from pacswatch.notify import tokens
from pacswatch.notify.store import NotifyStore
from pacswatch.store.tables import observations, scans
from pacswatch.store.web_public_tables import verify_checks
from pacswatch.web import optout_requests, scanproc
from pacswatch.web.auth import LoginLimiter, check_csrf, settings_of
from pacswatch.web.db import reading, writing
from pacswatch.web.templating import render

PUBLIC_PER_MINUTE = 60
OPTOUT_PER_HOUR = 5
RECHECK_AFTER = timedelta(minutes=10)  # a verify link starts at most one rescan of its case per this
CLOSED = ("connection-refused", "connection-timeout", "io-timeout", "tls-error")
NOT_STARTED = "not checked: the rescan did not start (try the link again later)"


def _limiter(request: Request, name: str, attempts: int, window: float) -> LoginLimiter:
    """A sliding-window counter per client address, kept on the application (LoginLimiter counts
    any event, not only failed logins)."""
    state = request.app.state
    limiter = getattr(state, name, None)
    if limiter is None:
        limiter = LoginLimiter(attempts, window)
        setattr(state, name, limiter)
    return limiter


def _count(request: Request, name: str, attempts: int, window: float) -> None:
    """429 once this address has used its `attempts` in `window` seconds; counts this one."""
    limiter = _limiter(request, name, attempts, window)
    keys = ("addr:" + (request.client.host if request.client else "unknown"),)
    now = settings_of(request).clock().timestamp()
    if limiter.blocked(keys, now):
        raise HTTPException(status_code=429, detail="too many requests from your address; try again later")
    limiter.failed(keys, now)


def rate_limited(request: Request) -> None:
    _count(request, "public_limiter", PUBLIC_PER_MINUTE, 60.0)


router = APIRouter(dependencies=[Depends(rate_limited)])


def _config(request: Request) -> configuration.Config:
    path = settings_of(request).notify_config
    return configuration.load(str(path) if path else None)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/about")
def about(request: Request):
    settings = settings_of(request)
    try:
        config = _config(request)
    except ValueError:  # a broken configuration must not take the identity page down
        config = configuration.Config()
    sender = config.settings.sender
    return render(request, "about.html", identity=Identity(), organisation=settings.public_name or sender.organisation,
                  contact=sender.reply_to or sender.from_addr, optout_text=sender.optout,
                  addresses=config.scanner_addresses)


@router.get("/optout")
def optout_form(request: Request):
    return render(request, "optout.html", sent=False, error=None, network="", requester="", note="")


@router.post("/optout", dependencies=[Depends(check_csrf)])
def optout_submit(request: Request, network: str = Form(...), requester: str = Form(""), note: str = Form("")):
    _count(request, "optout_limiter", OPTOUT_PER_HOUR, 3600.0)
    settings = settings_of(request)
    try:
        config = _config(request)
    except ValueError:  # the operator's file is broken: theirs to read (serve's log), not the public's
        raise HTTPException(status_code=503, detail="the opt-out form cannot take requests now; write to the "
                                                    "contact on the About page") from None
    try:
        optout_requests.submit(request.app.state.engine, config, secret=settings.secret,
                               base_url=_base_url(request), network_text=network, requester=requester, note=note,
                               now=settings.clock())
    except ValueError as exc:  # the network: normalize_network says what is wrong with what was typed
        return render(request, "optout.html", status_code=422, sent=False, error=str(exc), network=network,
                      requester=requester, note=note)
    # The same answer whatever we know: whether a contact is known would tell which networks hold findings.
    return render(request, "optout.html", sent=True, error=None, network="", requester="", note="")


def _opened(request: Request, token: str) -> optout_requests.Pending:
    settings = settings_of(request)
    try:
        return optout_requests.opened(request.app.state.engine, secret=settings.secret, token=token,
                                      now=settings.clock())
    except tokens.TokenError as exc:
        raise HTTPException(status_code=403, detail=str(exc)) from None
    except LookupError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


@router.get("/optout/confirm/{token}")
def optout_confirm_page(request: Request, token: str):
    """The mailed link shows a button: a mail system that opens links to scan them must not
    confirm by itself."""
    return render(request, "optout_confirm.html", pending=_opened(request, token), token=token)


@router.post("/optout/confirm/{token}", dependencies=[Depends(check_csrf)])
def optout_confirm(request: Request, token: str):
    _opened(request, token)  # the same refusals as the page
    settings = settings_of(request)
    pending = optout_requests.confirm(request.app.state.engine, secret=settings.secret, token=token,
                                      now=settings.clock())
    return render(request, "optout_confirm.html", pending=pending, token=token)


# --- /verify ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    endpoint: str
    state: str  # checking | still reachable | refuses unknown callers | closed | not checked
    at: datetime | None


def outcome_of(status: str | None, severity: str | None) -> str:
    """What one look says about one endpoint, in the owner's words (pure)."""
    if status is None:
        return "checking"
    if status == "blocked":
        return "not checked (on the opt-out list or out of scope)"
    if severity is None:
        return "closed" if status in CLOSED or status != "success" else "answers, nothing exposed"
    if severity == "low":
        return "reachable, but refuses unknown callers"
    return "still exposed"


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _web_ports(engine, keys: list[tuple[str, int]]) -> list[int]:
    """The case's ports whose last look was by the web probe (so the rescan probes them so)."""
    from pacswatch.store.tables import findings

    ips = sorted({ip for ip, _ in keys})
    with reading(engine) as conn:
        rows = conn.execute(select(findings.c.ip, findings.c.port, observations.c.service)
                            .join(observations, observations.c.id == findings.c.last_observation_id)
                            .where(findings.c.ip.in_(ips))).all()
    wanted = set(keys)
    return sorted({port for ip, port, service in rows if (ip, port) in wanted and service == "http"})


def _latest_check(conn, case_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(verify_checks).where(verify_checks.c.case_id == case_id)
                       .order_by(verify_checks.c.requested_at.desc(), verify_checks.c.id.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def schedule_check(request: Request, case_id: int, keys: list[tuple[str, int]], now: datetime) -> dict[str, Any]:
    """The case's latest check, started now unless one was started less than RECHECK_AFTER ago.
    The rescan is `pacswatch scan` of the case's endpoints (its plan refuses what the opt-out
    list and the scope refuse), found again by its seed."""
    engine = request.app.state.engine
    with reading(engine) as conn:
        latest = _latest_check(conn, case_id)
    if latest is not None and latest["requested_at"].replace(tzinfo=now.tzinfo) > now - RECHECK_AFTER:
        return latest
    seed = secrets.randbits(62)
    endpoints = [_endpoint(ip, port) for ip, port in keys]
    argv = ["scan", *endpoints, "--seed", str(seed), "--no-attribute", "--quiet"]
    if web := _web_ports(engine, keys):
        argv += ["--web-ports", ",".join(map(str, web))]
    with writing(engine) as conn:
        check_id = conn.execute(insert(verify_checks).returning(verify_checks.c.id), {
            "case_id": case_id, "requested_at": now, "seed": seed, "endpoints": endpoints}).scalar_one()
    pid = scanproc.start(argv, engine, name=f"verify-{case_id}-{check_id}")
    with writing(engine) as conn:
        conn.execute(update(verify_checks).where(verify_checks.c.id == check_id).values(pid=pid))
    return {"id": check_id, "case_id": case_id, "requested_at": now, "seed": seed, "endpoints": endpoints, "pid": pid}


def outcomes(engine, check: dict[str, Any], keys: list[tuple[str, int]]) -> tuple[list[Outcome], bool]:
    """Each endpoint's outcome in the check's rescan, and whether the rescan is over."""
    with reading(engine) as conn:
        scan = conn.execute(select(scans.c.id, scans.c.status).where(scans.c.seed == check["seed"])).first()
        looks: dict[tuple[str, int], Any] = {}
        if scan is not None:
            for row in conn.execute(select(observations.c.ip, observations.c.port, observations.c.status,
                                           observations.c.severity, observations.c.scanned_at)
                                    .where(observations.c.scan_id == scan.id)).all():
                looks[(row.ip, row.port)] = row
    if scan is None and not process_alive(check.get("pid")):
        # The process ended without creating its scan (it refused its arguments, the database
        # was busy): say so rather than "checking" for ever.
        return [Outcome(_endpoint(ip, port), NOT_STARTED, None) for ip, port in keys], True
    items = []
    for ip, port in keys:
        look = looks.get((ip, port))
        items.append(Outcome(_endpoint(ip, port), outcome_of(look.status if look else None,
                                                             look.severity if look else None),
                             look.scanned_at if look else None))
    done = scan is not None and scan.status != "running" or all(o.state != "checking" for o in items)
    return items, done


def _case_of(request: Request, token: str) -> int:
    settings = settings_of(request)
    try:
        return tokens.read(settings.secret, tokens.VERIFY, token, settings.clock()).subject
    except tokens.TokenError as exc:
        raise HTTPException(status_code=403, detail=str(exc)) from None


def _keys(request: Request, case_id: int) -> list[tuple[str, int]]:
    store = NotifyStore(request.app.state.engine)
    if store.case(case_id) is None:
        raise HTTPException(status_code=404, detail="this case no longer exists")
    return store.services_of(case_id)


@router.get("/verify/{token}")
def verify(request: Request, token: str):
    case_id = _case_of(request, token)
    keys = _keys(request, case_id)
    check = schedule_check(request, case_id, keys, settings_of(request).clock()) if keys else None
    items, done = outcomes(request.app.state.engine, check, keys) if check else ([], True)
    return render(request, "verify.html", token=token, check=check, items=items, done=done)


@router.get("/verify/{token}/status")
def verify_status(request: Request, token: str):
    """The outcome table alone, for htmx's polling while the rescan runs (starts nothing)."""
    case_id = _case_of(request, token)
    keys = _keys(request, case_id)
    with reading(request.app.state.engine) as conn:
        check = _latest_check(conn, case_id)
    items, done = outcomes(request.app.state.engine, check, keys) if check else ([], True)
    return render(request, "_verify_table.html", token=token, check=check, items=items, done=done)

