"""Lab web endpoints: PACS-like web APIs, viewers, and hostile web peers, on loopback.

Raw asyncio servers in one event loop in one thread (like lab/hostile.py), answering with
`Connection: close` and logging each request (kind, method, target, whether credentials came)
so a test can prove what a scanner did and did not ask for. The answers copy the shapes the
products document (docs/dicom-reference.md §5); `lab.endpoints` is a manifest of LabEndpoint.
Orthanc-like kinds: open, locked (only alice:lab-secret), default (orthanc:orthanc opens it, as
Orthanc >= 1.5.8's default user), open inside TLS (self-signed). Also a bare DICOMweb service
(QIDO-RS 204, OPTIONS allows POST), dcm4chee-arc open and secured (ui2 page served, REST 401
Bearer), OHIF with a backend on another host or a protected same-origin one, an unrelated login
page, and hostile peers (endless body, slow drip, huge headers, redirect loop, redirect to another
host, silent, garbage). Listing paths (/patients, /studies, ...) answer with the lab's synthetic
patients, so a scanner that asked would leak them. The `trap`, on another 127.x address, is
"another host": redirects and OHIF configs point at it, and it must never see a request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pacswatch.lab.data import make_archive
from pacswatch.lab.loopthread import LoopThread
from pacswatch.lab.manifest import LabEndpoint

if TYPE_CHECKING:  # imported where used: it loads cryptography
    from pacswatch.lab.certs import LabCertificates

ORTHANC_REALM = 'Basic realm="Orthanc Secure Area"'
LAB_USER = ("alice", "lab-secret")
DCM4CHEE_AE = "DCM4CHEE"
HEAD_CAP = 16 * 1024
PACS_KINDS = ("orthanc-open", "orthanc-locked", "orthanc-default", "orthanc-open-tls", "dicomweb",
              "dcm4chee-open", "dcm4chee-secured", "ohif-offsite", "ohif-protected", "login-page")
# Open Orthanc-like archives that send hostile text around their API: an unknown or unusable
# charset (Python's "undefined" codec raises on every use; "idna" refuses errors="replace"), an
# OHIF front page whose app-config names a qidoRoot with a control character, and a front-page
# redirect whose Location is full of backslashes, a /system Version that is a message, not a
# version. The finding must survive each of them.
HOSTILE_TEXT_KINDS = ("charset-undefined", "charset-idna", "ohif-control-qido", "backslash-location",
                      "version-text")
HUGE_COUNT = 10**30  # /statistics of huge-counts: no count, and too large for a 64-bit column
VERSION_TEXT = "1\n\nURGENT: call +1555 now"
HOSTILE_KINDS = ("endless-body", "slow-drip", "huge-headers", "redirect-loop", "redirect-offsite",
                 "silent", "garbage", "huge-counts") + HOSTILE_TEXT_KINDS
WEB_KINDS = PACS_KINDS + HOSTILE_KINDS
# Not in the demo's lab, for the tests of what people see: an open Orthanc whose /system Version
# is Rich markup and whose page title holds a terminal escape, and a locked one whose realm is
# markup (HTTP clients refuse a control character in a header, so no escape there).
TERMINAL_KINDS = ("markup-orthanc", "markup-realm")
MARKUP_TEXT = "[/]\x1b]0;pwned\x07[bold]"
MARKUP_REALM = "[/]pwned[bold]"
LISTINGS = ("/patients", "/studies", "/series", "/instances")

_ARCHIVE = make_archive()
_COUNTS = {"patients": _ARCHIVE.patient_count, "studies": _ARCHIVE.study_count,
           "series": _ARCHIVE.study_count, "instances": 2 * _ARCHIVE.study_count}


def expected(kind: str) -> dict:
    """What a scanner with default options should conclude about `kind`: dotted paths into the
    record's JSON, as in lab/manifest.py (so its check_record and compare work on web records)."""
    counts = {"http.patients": _COUNTS["patients"], "http.studies": _COUNTS["studies"]}
    web: dict[str, Any] = {"status": "success", "service": "http"}
    orthanc = {**web, "product.name": "Orthanc"}
    locked = {**orthanc, "http.auth": "auth-required", "severity": "low", "http.realm": 'Basic "Orthanc Secure Area"'}
    return {
        "orthanc-open": {**orthanc, "http.auth": "open", "severity": "critical", "product.version": "1.12.1",
                         "http.dicomweb.open": True, "http.writable": True, **counts},
        "orthanc-locked": locked, "orthanc-default": locked,
        "orthanc-open-tls": {**orthanc, "http.auth": "open", "severity": "critical", "transport": "tls",
                             "http.tls.handshake": True, "http.tls.self_signed": True, **counts},
        "dicomweb": {**web, "product": None, "http.auth": "open", "severity": "high", "http.dicomweb.open": True,
                     "http.writable": True},
        "dcm4chee-open": {**web, "product.name": "dcm4chee-arc", "http.auth": "open", "severity": "critical",
                          **counts},
        "dcm4chee-secured": {**web, "product.name": "dcm4chee-arc", "http.auth": "auth-required", "severity": "medium"},
        "ohif-offsite": {**web, "product.name": "OHIF Viewer", "http.auth": None, "severity": "low"},
        "ohif-protected": {**web, "product.name": "OHIF Viewer", "http.auth": "auth-required", "severity": "medium"},
        "login-page": {**web, "product": None, "severity": None, "http.auth": "auth-required"},
        "endless-body": {**web, "product": None, "severity": None},
        "redirect-offsite": {**web, "product": None, "severity": None},
        "slow-drip": {"status": "io-timeout"}, "silent": {"status": "io-timeout"},
        "huge-headers": {"status": "protocol-error"}, "redirect-loop": {"status": "protocol-error"},
        "garbage": {"status": "protocol-error"},
        "markup-orthanc": {**web, "http.auth": "open", "severity": "critical", **counts},
        "markup-realm": {**web, "http.auth": "auth-required"},
        **{hostile: {**orthanc, "http.auth": "open", "severity": "critical", **counts}
           for hostile in HOSTILE_TEXT_KINDS},
        "version-text": {**orthanc, "http.auth": "open", "severity": "critical", "product.version": None, **counts},
        # Counts no archive holds are not counts: the open API is still found (high, uncounted).
        "huge-counts": {**orthanc, "http.auth": "open", "severity": "high", "http.patients": None,
                        "http.studies": None},
    }[kind]


# With --try-default-credentials: Orthanc's default user opens one lock and not the other.
WITH_DEFAULT_CREDENTIALS = {"orthanc-default": {"http.auth": "default-credentials", "severity": "critical"},
                            "orthanc-locked": {"http.auth": "auth-required", "severity": "low"}}


@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    target: str
    authorized: bool  # an Authorization header came (its value is never kept)
    user_agent: str


@dataclass
class _Req:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def credentials(self) -> tuple[str, str] | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            if scheme.lower() == "basic":
                user, _, password = base64.b64decode(token).decode().partition(":")
                return user, password
        return None


def _response(status: int, body: bytes = b"", content_type: str = "text/html", **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Server: pacswatch-lab-web", "Connection: close",
             f"Content-Length: {len(body)}"]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _json(data: object, content_type: str = "application/json") -> bytes:
    return _response(200, json.dumps(data).encode(), content_type)


def _page(title: str, extra: str = "") -> bytes:
    return _response(200, f"<!DOCTYPE html><html><head><title>{title}</title>{extra}</head>"
                          f"<body><div id=\"app\"></div></body></html>".encode())


NOT_FOUND = _response(404)


def _listing() -> bytes:
    """What a scanner must never ask for: patient-level data of the synthetic archive."""
    return _json([{"PatientName": s.patient_name, "PatientID": s.patient_id,
                   "StudyInstanceUID": s.study_instance_uid} for s in _ARCHIVE.studies])


def _orthanc(req: _Req) -> bytes:
    if req.path == "/":
        return _response(301, Location="app/explorer.html")
    if req.path == "/app/explorer.html":
        return _page("Orthanc Explorer")
    if req.path == "/system":
        return _json({"ApiVersion": 22, "DatabaseVersion": 6, "DicomAet": "LABPACS", "DicomPort": 4242,
                      "HttpPort": 8042, "IsHttpServerSecure": False, "Name": "pacswatch-lab",
                      "PluginsEnabled": True, "Version": "1.12.1"})
    if req.path == "/statistics":
        return _json({f"Count{k.title()}": v for k, v in _COUNTS.items()} | {"TotalDiskSizeMB": 1})
    if req.path == "/dicom-web/studies" and req.method == "GET":
        if "StudyInstanceUID=2.25." in req.target:
            return _json([], content_type="application/dicom+json")
        return _listing()
    if req.path in LISTINGS:
        return _listing()
    return NOT_FOUND


def _locked(opens_with: tuple[str, str]):
    def respond(req: _Req) -> bytes:
        if req.credentials() == opens_with:
            return _orthanc(req)
        return _response(401, b"", WWW_Authenticate=ORTHANC_REALM)
    return respond


def _dicomweb(req: _Req) -> bytes:
    if req.path == "/dicom-web/studies":
        if req.method == "OPTIONS":
            return _response(200, Allow="GET, POST, OPTIONS")
        if "StudyInstanceUID=2.25." in req.target:
            return _response(204)
        return _listing()
    return NOT_FOUND


def _dcm4chee(secured: bool):
    rs = f"/dcm4chee-arc/aets/{DCM4CHEE_AE}/rs"

    def respond(req: _Req) -> bytes:
        if req.path == "/":
            return _page("Welcome to WildFly")
        if req.path == "/dcm4chee-arc/ui2/":
            return _page("dcm4chee-arc-ui")
        if not req.path.startswith("/dcm4chee-arc/"):
            return NOT_FOUND
        if secured:
            return _response(401, WWW_Authenticate='Bearer realm="dcm4che"')
        if req.path == "/dcm4chee-arc/aets":
            return _json([{"dicomAETitle": DCM4CHEE_AE, "dicomDescription": "Lab archive"}])
        if req.path in (f"{rs}/patients/count", f"{rs}/studies/count"):
            return _json({"count": _COUNTS["patients" if "patients" in req.path else "studies"]})
        if req.path == f"{rs}/studies" and "StudyInstanceUID=2.25." in req.target:
            return _json([], content_type="application/dicom+json")
        if req.path.startswith(rs):
            return _listing()
        return NOT_FOUND
    return respond


def _ohif(backend: str, protected: bool):
    def respond(req: _Req) -> bytes:
        if req.path == "/":
            return _page("OHIF Viewer", '<script src="/app-config.js"></script>')
        if req.path == "/app-config.js":
            config = ("window.config = { routerBasename: '/', dataSources: [{ sourceName: 'dicomweb', "
                      f"configuration: {{ friendlyName: 'lab', qidoRoot: '{backend}', wadoRoot: '{backend}' }} }}] }};")
            return _response(200, config.encode(), "application/javascript")
        if protected and req.path.startswith("/dicom-web"):
            return _response(401, WWW_Authenticate='Basic realm="lab viewer backend"')
        return NOT_FOUND
    return respond


def _with_charset(charset: str):
    """The open Orthanc, every answer's Content-Type naming `charset`."""
    def respond(req: _Req) -> bytes:
        head, sep, body = _orthanc(req).partition(b"\r\n\r\n")
        head = re.sub(rb"(Content-Type: [^\r]*)", rb"\1; charset=" + charset.encode(), head)
        return head + sep + body
    return respond


def _ohif_control_qido(req: _Req) -> bytes:
    """The open Orthanc behind an OHIF front page whose qidoRoot holds a control character."""
    if req.path == "/":
        return _page("OHIF Viewer", '<script src="/app-config.js"></script>')
    if req.path == "/app-config.js":
        config = "window.config = { dataSources: [{ configuration: { qidoRoot: '/dicom\x01web\x1b[31m' } }] };"
        return _response(200, config.encode(), "application/javascript")
    return _orthanc(req)


def _backslash_location(req: _Req) -> bytes:
    """The open Orthanc whose front page redirects to a Location of backslashes."""
    if req.path == "/":
        return _response(302, Location="http://[\\]/\\app\\explorer.html")
    return _orthanc(req)


def _version_text(req: _Req) -> bytes:
    """The open Orthanc whose /system Version is a message for whoever reads the report."""
    if req.path == "/system":
        system = json.loads(_orthanc(req).partition(b"\r\n\r\n")[2])
        body = json.dumps(system | {"Version": VERSION_TEXT}).encode()
        return _response(200, body, "application/json")
    return _orthanc(req)


def _markup_orthanc(req: _Req) -> bytes:
    """The open Orthanc, with markup and an escape in its /system Version and its page title."""
    if req.path == "/system":
        system = json.loads(_orthanc(req).partition(b"\r\n\r\n")[2])
        return _response(200, json.dumps(system | {"Version": "[/]"}).encode(), "application/json")
    if req.path == "/app/explorer.html":
        return _page(f"Orthanc Explorer {MARKUP_TEXT}")
    return _orthanc(req)


def _markup_realm(req: _Req) -> bytes:
    return _response(401, b"", WWW_Authenticate=f'Basic realm="{MARKUP_REALM}"')


def _huge_counts(req: _Req) -> bytes:
    """The open Orthanc whose /statistics counts are larger than any archive (and any column)."""
    if req.path == "/statistics":
        return _json({f"Count{k.title()}": HUGE_COUNT for k in _COUNTS})
    return _orthanc(req)


def _login_page(req: _Req) -> bytes:
    """An intranet unrelated to PACS: / sends the browser to its sign-in page."""
    if req.path == "/":
        return _response(302, Location="/login")
    return _page("Sign in - Lab Intranet", '<form action="/login"></form>') if req.path == "/login" else NOT_FOUND


class WebLab:
    """The lab's web endpoints on `ip` (port 0 = free ports) and the trap on `other_ip`."""

    def __init__(self, kinds: tuple[str, ...] = WEB_KINDS, ip: str = "127.0.0.1",
                 other_ip: str | None = None, *, hold: float = 60.0, drip_interval: float = 0.2,
                 tls_context: ssl.SSLContext | None = None, base_port: int = 0) -> None:
        if set(kinds) - set(WEB_KINDS + TERMINAL_KINDS) or ("orthanc-open-tls" in kinds and tls_context is None):
            raise ValueError(f"unknown lab web kinds, or orthanc-open-tls without a tls_context: {kinds}")
        self.kinds, self.ip = kinds, ip
        self.other_ip = other_ip or _other_ip(ip)
        self.hold, self.drip_interval, self.tls_context = hold, drip_interval, tls_context
        # 0: free ports (tests); else kind i listens on base_port + i, so that the demo's web
        # endpoints keep their address from one run to the next (one finding each, not one per run).
        self.base_port = base_port
        self.endpoints: list[LabEndpoint] = []  # the manifest (lab/manifest.py's shape)
        self.trap_port = 0
        self.requests: list[Request] = []
        self._runner = LoopThread("pacswatch-lab-web")
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        # lab certificates to remove at stop (start_web_lab makes them)
        self._certs: LabCertificates | None = None

    def start(self, timeout: float = 10.0) -> "WebLab":
        try:
            self._runner.start(self._start, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def trap_hits(self) -> list[Request]:  # must stay empty: the trap is "another host"
        return [r for r in self.requests if r.kind == "trap"]

    async def _start(self) -> None:
        trap = await asyncio.start_server(self._wrap("trap"), self.other_ip, 0)
        self._servers.append(trap)
        self.trap_port = trap.sockets[0].getsockname()[1]
        for i, kind in enumerate(self.kinds):
            tls = self.tls_context if kind == "orthanc-open-tls" else None
            port = self.base_port + i if self.base_port else 0
            server = await asyncio.start_server(self._wrap(kind), self.ip, port, ssl=tls,
                                                ssl_handshake_timeout=5.0 if tls else None)
            self._servers.append(server)
            self.endpoints.append(LabEndpoint(f"web-{kind}", self.ip, server.sockets[0].getsockname()[1], kind,
                                              expected(kind), "web", "tls" if tls else "tcp"))

    def stop(self, timeout: float = 5.0) -> None:
        self._runner.stop(self._stop, timeout)
        if self._certs is not None:
            self._certs.cleanup()
            self._certs = None

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._servers.clear()

    def _wrap(self, kind: str):
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None  # asyncio runs each connection's handler as a task
            self._tasks.add(task)
            try:
                async with asyncio.timeout(self.hold):
                    await self._serve(kind, reader, writer)
            except (TimeoutError, OSError, asyncio.CancelledError, ssl.SSLError):
                pass
            finally:
                self._tasks.discard(task)
                writer.transport.abort()
        return run

    async def _serve(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if kind == "garbage":  # speaks first, and not HTTP
            writer.write(b"\x9f\x00 this is not HTTP \xff" + os.urandom(64))
            await writer.drain()
            return
        req = await _read_head(reader)
        if req is None:
            return
        self.requests.append(Request(kind, req.method, req.target, "authorization" in req.headers,
                                     req.headers.get("user-agent", "")))
        if kind == "silent":  # reads until the client gives up
            await reader.read(1)
            return
        hostile = getattr(self, "_" + kind.replace("-", "_"), None)
        if hostile is not None:
            await hostile(req, writer)
            return
        writer.write(self._route(kind)(req))
        await writer.drain()

    def _route(self, kind: str):
        backend_offsite = f"http://{self.other_ip}:{self.trap_port}/dicom-web"
        return {
            "orthanc-open": _orthanc, "orthanc-open-tls": _orthanc,
            "orthanc-locked": _locked(LAB_USER), "orthanc-default": _locked(("orthanc", "orthanc")),
            "dicomweb": _dicomweb, "dcm4chee-open": _dcm4chee(False), "dcm4chee-secured": _dcm4chee(True),
            "ohif-offsite": _ohif(backend_offsite, False), "ohif-protected": _ohif("/dicom-web", True),
            "login-page": _login_page, "trap": lambda req: _page("trap: another host"),
            "markup-orthanc": _markup_orthanc, "markup-realm": _markup_realm,
            "charset-undefined": _with_charset("undefined"), "charset-idna": _with_charset("idna"),
            "ohif-control-qido": _ohif_control_qido, "backslash-location": _backslash_location,
            "version-text": _version_text, "huge-counts": _huge_counts,
        }[kind]

    # ------------------------------------------------------------------ hostile peers

    async def _endless_body(self, req: _Req, writer) -> None:
        await _forever(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n",
                       b"<p>" + b"x" * 65536 + b"</p>")

    async def _huge_headers(self, req: _Req, writer) -> None:
        await _forever(writer, b"HTTP/1.1 200 OK\r\n", b"X-Huge: " + b"h" * 8000 + b"\r\n")

    async def _slow_drip(self, req: _Req, writer) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + b"X-Drip: " + b"a" * 100000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.drip_interval)

    async def _redirect_loop(self, req: _Req, writer) -> None:
        await _forever(writer, _response(302, Location=req.path.rstrip("/") + "/loop"), None)

    async def _redirect_offsite(self, req: _Req, writer) -> None:
        await _forever(writer, _response(302, Location=f"http://{self.other_ip}:{self.trap_port}{req.path}"), None)


async def _forever(writer, head: bytes, chunk: bytes | None) -> None:
    """Send `head`, then `chunk` until the client goes away (once, when chunk is None)."""
    writer.write(head)
    await writer.drain()
    while chunk is not None:
        writer.write(chunk)
        await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> _Req | None:
    """The request line and headers; the lab's clients send no body it needs."""
    try:
        async with asyncio.timeout(10.0):
            head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        return None
    lines = head[:HEAD_CAP].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Req(parts[0], parts[1], headers)


def _other_ip(ip: str) -> str:
    """"Another host" on loopback: the same /8, a different last octet."""
    prefix, last = ip.rsplit(".", 1)
    return f"{prefix}.{int(last) % 250 + 2}"


def start_web_lab(base_ip: str = "127.0.0.1", other_ip: str | None = None, *,
                  kinds: tuple[str, ...] = WEB_KINDS, **kwargs) -> WebLab:
    """Start every web kind on `base_ip`; `lab.endpoints` is the manifest, `lab.stop()` ends it.
    TLS kinds get a throw-away self-signed certificate (lab/certs.py), removed at stop."""
    certs = None
    if "orthanc-open-tls" in kinds and "tls_context" not in kwargs:
        from pacswatch.lab.certs import make_certificates

        certs = make_certificates([base_ip])
        kwargs["tls_context"] = certs.server_context(require_client_cert=False)
    lab = WebLab(kinds, base_ip, other_ip, **kwargs)
    lab._certs = certs
    return lab.start()
