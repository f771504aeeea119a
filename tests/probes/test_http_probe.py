"""The web probe against the lab's web endpoints: PACS-like APIs, viewers and hostile peers."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import replace
import socket
import time

import pytest

from pacswatch.identity import Identity
from pacswatch.lab.data import planted_strings
from pacswatch.lab.manifest import check_record
from pacswatch.lab.web import HOSTILE_KINDS, LISTINGS, PACS_KINDS, WITH_DEFAULT_CREDENTIALS, start_web_lab
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.http import HttpProbe, endpoint_budget
from pacswatch.probes.http_client import BODY_CAP, WebClient
from pacswatch.net.tls import ScannerTlsContext
from pacswatch.record import Record
from pacswatch.scan.runner import probe_endpoint

LAB_IP, TRAP_IP = "127.0.80.1", "127.0.80.3"
TIMEOUTS = Timeouts(http=1.0)


@pytest.fixture(scope="module")
def lab():
    lab = start_web_lab(LAB_IP, TRAP_IP, drip_interval=0.2)
    yield lab
    lab.stop()


def endpoint(lab, kind: str):
    return next(e for e in lab.endpoints if e.kind == kind)


class CountingLimiter:
    """Stands for the scan's RateLimiter: counts the tokens taken (one per new connection)."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self, loop=None, ip=None) -> None:  # RateLimiter.acquire's signature
        self.acquired += 1


def scan(ip: str, port: int, *, probe: HttpProbe | None = None, limiter=None, **options) -> Record:
    ctx = ProbeContext(options=ProbeOptions(timeouts=TIMEOUTS, **options), limiter=limiter)
    return asyncio.run(probe_endpoint(probe or HttpProbe(), ctx, Endpoint(ip, port)))


def new_requests(lab, before: int, kind: str | None = None):
    return [r for r in lab.requests[before:] if kind is None or r.kind == kind]


@pytest.mark.parametrize("kind", PACS_KINDS)
def test_pacs_kinds_meet_the_manifest(lab, kind):
    ep = endpoint(lab, kind)
    record = scan(ep.ip, ep.port)
    assert check_record(ep, record) == [], record.model_dump_json(indent=1)
    assert ep.family == "web" and record.transport == ep.transport
    if record.severity is not None:
        assert record.reasons and all(isinstance(r, str) and r.endswith(".") for r in record.reasons)
    json_text = record.model_dump_json()
    for planted in planted_strings():
        assert planted not in json_text


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_hostile_peer_costs_one_status_within_its_deadline(lab, kind):
    ep = endpoint(lab, kind)
    started = time.monotonic()
    record = scan(ep.ip, ep.port)
    elapsed = time.monotonic() - started
    assert check_record(ep, record) == [], record.detail
    assert elapsed < endpoint_budget(TIMEOUTS) + 0.5
    Record.model_validate_json(record.model_dump_json())  # still a valid record


def test_redirects_to_another_host_are_never_followed(lab):
    for kind in ("redirect-offsite", "ohif-offsite"):
        ep = endpoint(lab, kind)
        record = scan(ep.ip, ep.port)
        assert f"{TRAP_IP}:{lab.trap_port}" in record.detail  # reported as a string ...
        if kind == "ohif-offsite":
            assert any(f"{TRAP_IP}:{lab.trap_port}" in b for b in record.http.backends)
    assert lab.trap_hits() == []  # ... and never contacted


def test_same_origin_redirect_is_followed(lab):
    ep = endpoint(lab, "orthanc-open")
    record = scan(ep.ip, ep.port)
    assert record.http.url == f"http://{ep.ip}:{ep.port}/app/explorer.html"
    assert record.http.title == "Orthanc Explorer" and record.http.status_code == 200
    assert "Orthanc Explorer" in record.http.components


def test_no_listing_no_credentials_and_an_honest_user_agent(lab):
    before = len(lab.requests)
    identity = Identity(contact_url="https://cert.example/pacswatch")
    records = [scan(ep.ip, ep.port, identity=identity) for ep in lab.endpoints if ep.kind in PACS_KINDS]
    seen = new_requests(lab, before)
    assert seen and all(not r.authorized for r in seen)  # no login attempt without the opt-in
    assert not any(r.http.default_credentials_tried for r in records if r.http)
    assert all(r.user_agent == identity.user_agent and "https://cert.example/pacswatch" in r.user_agent
               for r in seen)
    for r in seen:
        path = r.target.split("?")[0]
        assert path not in LISTINGS
        if path.endswith("/studies") and r.method == "GET":
            assert "StudyInstanceUID=2.25." in r.target  # only the random-UID QIDO search
    assert len(seen) <= 10 * len(records)  # a handful of requests per endpoint


@pytest.mark.parametrize("kind", sorted(WITH_DEFAULT_CREDENTIALS))
def test_default_credentials_only_with_the_opt_in_and_only_once(lab, kind):
    ep = endpoint(lab, kind)
    before = len(lab.requests)
    record = scan(ep.ip, ep.port, try_default_credentials=True)
    assert check_record(replace(ep, expected=WITH_DEFAULT_CREDENTIALS[kind]), record) == []
    assert "default credentials tried (opt-in)" in record.detail
    assert record.http.default_credentials_tried
    assert len([r for r in new_requests(lab, before, kind) if r.authorized]) == 1
    if record.http.auth == "default-credentials":
        assert record.product.version == "1.12.1"  # /system, read once logged in


def test_tls_facts_on_https(lab):
    ep = endpoint(lab, "orthanc-open-tls")
    record = scan(ep.ip, ep.port)
    tls = record.http.tls
    assert record.transport == "tls" and tls.handshake
    assert tls.version.startswith("TLSv1") and tls.cipher
    assert tls.self_signed and tls.expired is False and tls.not_after is not None
    assert "pacswatch-lab-server" in tls.subject
    assert record.tls == tls  # the same facts where DICOM TLS facts are


def test_https_first_ports_skip_the_plain_attempt(lab):
    ep = endpoint(lab, "orthanc-open-tls")
    plain_first, tls_first = CountingLimiter(), CountingLimiter()
    before = len(lab.requests)
    scan(ep.ip, ep.port, limiter=plain_first)
    served_plain_first = len(new_requests(lab, before, ep.kind))
    before = len(lab.requests)
    record = scan(ep.ip, ep.port, limiter=tls_first, probe=HttpProbe(https_ports={ep.port}))
    served_tls_first = len(new_requests(lab, before, ep.kind))
    assert record.transport == "tls" and record.severity == "critical"
    # The lab answers with Connection: close, so every request is a connection; the plain
    # attempt costs exactly one more.
    assert tls_first.acquired == served_tls_first
    assert plain_first.acquired == served_plain_first + 1


def test_rate_limiter_sees_every_connection(lab):
    ep = endpoint(lab, "dcm4chee-open")
    limiter = CountingLimiter()
    before = len(lab.requests)
    scan(ep.ip, ep.port, limiter=limiter)
    assert limiter.acquired == len(new_requests(lab, before, ep.kind)) > 3


def test_connection_refused_is_one_status():
    with socket.socket() as s:
        s.bind((LAB_IP, 0))
        port = s.getsockname()[1]
    record = scan(LAB_IP, port)
    assert record.status == "connection-refused" and record.service is None and record.severity is None


def test_a_bug_in_the_probe_is_a_status_not_a_crash(lab, monkeypatch):
    async def broken(self, ctx, client):
        raise RuntimeError("boom")

    monkeypatch.setattr(HttpProbe, "_probe_origin", broken)
    ep = endpoint(lab, "orthanc-open")
    record = scan(ep.ip, ep.port)
    assert record.status == "error" and "boom" in record.detail


def client(ip: str, port: int) -> WebClient:
    loop = asyncio.get_running_loop()
    return WebClient("http", ip, port, user_agent="test", timeout=2.0, deadline=loop.time() + 5.0,
                     ssl_context=ScannerTlsContext().context)


def test_body_cap_stops_an_endless_body(lab):
    ep = endpoint(lab, "endless-body")

    async def go():
        c = client(ep.ip, ep.port)
        try:
            return await c.get("/")
        finally:
            await c.aclose()

    response = asyncio.run(go())
    assert response.truncated and len(response.body) == BODY_CAP


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap():
    bomb = gzip.compress(b"\0" * (64 * BODY_CAP))  # 16 MiB of zeros in about 16 KiB

    async def serve(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: text/html\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(bomb) + bomb)
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_server(serve, LAB_IP, 0)
        c = client(LAB_IP, server.sockets[0].getsockname()[1])
        try:
            return await c.get("/")
        finally:
            await c.aclose()
            server.close()

    response = asyncio.run(go())
    assert response.truncated and len(response.body) == BODY_CAP


def test_a_keycloak_login_redirect_names_dcm4chee_and_is_not_followed():
    keycloak = (f"http://{TRAP_IP}:9/realms/dcm4che/protocol/openid-connect/auth?client_id=dcm4chee-arc-ui"
                "&response_type=code")
    paths: list[str] = []

    async def serve(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        paths.append(head.split(b" ")[1].decode())
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                     % keycloak.encode())
        await writer.drain()
        writer.close()

    async def go():
        server = await asyncio.start_server(serve, LAB_IP, 0)
        try:
            ctx = ProbeContext(options=ProbeOptions(timeouts=TIMEOUTS))
            return await probe_endpoint(HttpProbe(), ctx, Endpoint(LAB_IP, server.sockets[0].getsockname()[1]))
        finally:
            server.close()

    record = asyncio.run(go())
    assert record.product.name == "dcm4chee-arc"
    assert record.http.auth == "auth-required" and record.http.realm == 'Keycloak realm "dcm4che"'
    assert record.severity == "low"
    assert "/dcm4chee-arc/aets" in paths and all(not p.startswith("/realms") for p in paths)


def test_a_failed_https_handshake_is_a_tls_fact(lab):
    ep = endpoint(lab, "login-page")  # plain HTTP, probed as if it were an HTTPS port
    record = scan(ep.ip, ep.port, probe=HttpProbe(https_ports={ep.port}))
    assert record.status == "success" and record.transport == "tcp"  # the plain fallback worked
    ep = endpoint(lab, "silent")
    record = scan(ep.ip, ep.port, probe=HttpProbe(https_ports={ep.port}))
    assert record.status == "tls-error" and record.transport == "tls"
    assert record.tls.handshake is False and record.tls.error
