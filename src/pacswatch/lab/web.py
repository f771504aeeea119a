"""Lab web endpoints: PACS-like web APIs, viewers, and hostile web peers, on loopback.

All run as raw asyncio servers in one event loop in one thread (like lab/hostile.py), answer
with `Connection: close`, and log each request (kind, method, path, whether credentials came)
so a test can prove what a scanner did and did not ask for. Nothing here is a real product:
the answers copy the shapes the products document (reference section 5).

PACS-like kinds (the manifest's `expected` says what a scanner should conclude):
- `orthanc-open`       /system, /statistics (the lab archive's counts), /app/explorer.html,
                       DICOMweb at /dicom-web; no credentials asked.
- `orthanc-locked`     every path 401 `Basic realm="Orthanc Secure Area"`; only alice:lab-secret.
- `orthanc-default`    the same lock, but orthanc:orthanc opens it (Orthanc >= 1.5.8's default user).
- `orthanc-open-tls`   `orthanc-open` inside TLS with a self-signed certificate.
- `dicomweb`           a bare DICOMweb service: QIDO-RS open (204), OPTIONS allows POST (STOW-RS).
- `dcm4chee-open`      ui2 page, /aets, QIDO count endpoints open.
- `dcm4chee-secured`   ui2 page served, REST API 401 `Bearer realm="dcm4che"`.
- `ohif-offsite`       OHIF page whose app-config names a backend on another host (the trap).
- `ohif-protected`     OHIF page whose same-origin backend /dicom-web asks for credentials.
- `login-page`         an unrelated web application's sign-in page.
Hostile kinds: `endless-body`, `slow-drip`, `huge-headers`, `redirect-loop`,
`redirect-offsite` (to the trap), `silent`, `garbage`.

Listing paths (/patients, /studies, ...) answer with the lab's synthetic patients: a scanner that
asked for them would leak them, which the tests look for. The `trap` server, on another 127.x
address, stands for "another host": redirects and OHIF configs point at it, and it must never
see a request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import threading
from dataclasses import dataclass, field

from pacswatch.lab.data import make_archive

ORTHANC_REALM = 'Basic realm="Orthanc Secure Area"'
LAB_USER = ("alice", "lab-secret")
ORTHANC_DEFAULT = ("orthanc", "orthanc")
DCM4CHEE_AE = "DCM4CHEE"
HEAD_CAP = 16 * 1024
PACS_KINDS = ("orthanc-open", "orthanc-locked", "orthanc-default", "orthanc-open-tls", "dicomweb",
              "dcm4chee-open", "dcm4chee-secured", "ohif-offsite", "ohif-protected", "login-page")
HOSTILE_KINDS = ("endless-body", "slow-drip", "huge-headers", "redirect-loop", "redirect-offsite",
                 "silent", "garbage")
WEB_KINDS = PACS_KINDS + HOSTILE_KINDS
LISTINGS = ("/patients", "/studies", "/series", "/instances")

_ARCHIVE = make_archive()
_COUNTS = {"patients": _ARCHIVE.patient_count, "studies": _ARCHIVE.study_count,
           "series": _ARCHIVE.study_count, "instances": 2 * _ARCHIVE.study_count}


def expected(kind: str) -> dict:
    """What a scanner with default options should conclude about `kind` (the manifest)."""
    counts = {"patients": _COUNTS["patients"], "studies": _COUNTS["studies"]}
    orthanc = {"status": "success", "service": "http", "product": "Orthanc"}
    return {
        "orthanc-open": {**orthanc, "auth": "open", "severity": "critical", "version": "1.12.1",
                         "dicomweb_open": True, **counts},
        "orthanc-locked": {**orthanc, "auth": "auth-required", "severity": "low"},
        "orthanc-default": {**orthanc, "auth": "auth-required", "severity": "low",
                            "with_default_credentials": {"auth": "default-credentials", "severity": "critical"}},
        "orthanc-open-tls": {**orthanc, "auth": "open", "severity": "critical", "transport": "tls",
                             "self_signed": True, **counts},
        "dicomweb": {"status": "success", "service": "http", "product": None, "auth": "open",
                     "severity": "high", "dicomweb_open": True, "writable": True},
        "dcm4chee-open": {"status": "success", "service": "http", "product": "dcm4chee-arc", "auth": "open",
                          "severity": "critical", **counts},
        "dcm4chee-secured": {"status": "success", "service": "http", "product": "dcm4chee-arc",
                             "auth": "auth-required", "severity": "medium"},
        "ohif-offsite": {"status": "success", "service": "http", "product": "OHIF Viewer", "auth": None,
                         "severity": "low"},
        "ohif-protected": {"status": "success", "service": "http", "product": "OHIF Viewer",
                           "auth": "auth-required", "severity": "medium"},
        "login-page": {"status": "success", "service": "http", "product": None, "severity": None},
        "endless-body": {"status": "success", "product": None, "severity": None},
        "slow-drip": {"status": "io-timeout"},
        "huge-headers": {"status": "protocol-error"},
        "redirect-loop": {"status": "protocol-error"},
        "redirect-offsite": {"status": "success", "product": None, "severity": None},
        "silent": {"status": "io-timeout"},
        "garbage": {"status": "protocol-error"},
    }[kind]


@dataclass(frozen=True)
class WebLabEndpoint:
    name: str  # the kind
    ip: str
    port: int
    expected: dict


@dataclass(frozen=True)
class Request:
    kind: str
    method: str
    target: str
    authorized: bool  # an Authorization header came (its value is never kept)


@dataclass
class _Req:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def credentials(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password


def _response(status: int, body: bytes = b"", content_type: str = "text/html", **headers: str) -> bytes:
    reason = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 401: "Unauthorized",
              404: "Not Found"}.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {reason}", "Server: pacswatch-lab-web", "Connection: close",
             f"Content-Length: {len(body)}"]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _json(data: object, status: int = 200, content_type: str = "application/json") -> bytes:
    return _response(status, json.dumps(data).encode(), content_type)


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
        return _json({"ApiVersion": 22, "CheckRevisions": False, "DatabaseBackendPlugin": None,
                      "DatabaseVersion": 6, "DicomAet": "LABPACS", "DicomPort": 4242, "HttpPort": 8042,
                      "IsHttpServerSecure": False, "Name": "pacswatch-lab", "PluginsEnabled": True,
                      "StorageAreaPlugin": None, "Version": "1.12.1"})
    if req.path == "/statistics":
        return _json({"CountInstances": _COUNTS["instances"], "CountPatients": _COUNTS["patients"],
                      "CountSeries": _COUNTS["series"], "CountStudies": _COUNTS["studies"],
                      "TotalDiskSize": "1048576", "TotalDiskSizeMB": 1})
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


def _login_page(req: _Req) -> bytes:
    if req.path == "/":
        return _page("Sign in - Lab Intranet", '<form method="post" action="/login"></form>')
    return NOT_FOUND


class WebLab:
    """The lab's web endpoints on `ip` (port 0 = free ports) and the trap on `other_ip`."""

    def __init__(self, kinds: tuple[str, ...] = WEB_KINDS, ip: str = "127.0.0.1",
                 other_ip: str | None = None, *, hold: float = 60.0, drip_interval: float = 0.2,
                 tls_context: ssl.SSLContext | None = None) -> None:
        for kind in kinds:
            if kind not in WEB_KINDS:
                raise ValueError(f"unknown lab web kind {kind!r}")
        if "orthanc-open-tls" in kinds and tls_context is None:
            raise ValueError("orthanc-open-tls needs a tls_context")
        self.kinds, self.ip = kinds, ip
        self.other_ip = other_ip or _other_ip(ip)
        self.hold, self.drip_interval, self.tls_context = hold, drip_interval, tls_context
        self.endpoints: list[WebLabEndpoint] = []
        self.trap_port = 0
        self.requests: list[Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()

    def start(self, timeout: float = 10.0) -> "WebLab":
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="pacswatch-lab-web", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def trap_hits(self) -> list[Request]:
        return [r for r in self.requests if r.kind == "trap"]

    async def _start(self) -> None:
        trap = await asyncio.start_server(self._wrap("trap"), self.other_ip, 0)
        self._servers.append(trap)
        self.trap_port = trap.sockets[0].getsockname()[1]
        for kind in self.kinds:
            tls = self.tls_context if kind == "orthanc-open-tls" else None
            server = await asyncio.start_server(self._wrap(kind), self.ip, 0, ssl=tls,
                                                ssl_handshake_timeout=5.0 if tls else None)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.endpoints.append(WebLabEndpoint(kind, self.ip, port, expected(kind)))

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        if thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        loop.close()
        self._loop = self._thread = None

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
        self.requests.append(Request(kind, req.method, req.target, "authorization" in req.headers))
        if kind == "silent":
            await reader.read(1)  # until the client gives up
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
            "orthanc-locked": _locked(LAB_USER), "orthanc-default": _locked(ORTHANC_DEFAULT),
            "dicomweb": _dicomweb, "dcm4chee-open": _dcm4chee(False), "dcm4chee-secured": _dcm4chee(True),
            "ohif-offsite": _ohif(backend_offsite, False), "ohif-protected": _ohif("/dicom-web", True),
            "login-page": _login_page, "trap": lambda req: _page("trap: another host"),
        }[kind]

    # ------------------------------------------------------------------ hostile peers

    async def _endless_body(self, req: _Req, writer) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>")
        chunk = b"<p>" + b"x" * 65536 + b"</p>"
        while True:
            writer.write(chunk)
            await writer.drain()

    async def _slow_drip(self, req: _Req, writer) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + b"X-Drip: " + b"a" * 100000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.drip_interval)

    async def _huge_headers(self, req: _Req, writer) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Huge: " + b"h" * 8000 + b"\r\n"
        while True:
            writer.write(line)
            await writer.drain()

    async def _redirect_loop(self, req: _Req, writer) -> None:
        writer.write(_response(302, Location=req.path.rstrip("/") + "/loop"))
        await writer.drain()

    async def _redirect_offsite(self, req: _Req, writer) -> None:
        writer.write(_response(302, Location=f"http://{self.other_ip}:{self.trap_port}{req.path}"))
        await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> _Req | None:
    """The request line and headers (at most HEAD_CAP bytes); the lab's clients send no bodies
    it needs."""
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
    octets = ip.split(".")
    octets[-1] = str((int(octets[-1]) % 250) + 2)
    return ".".join(octets)


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
    if certs is not None:
        stop = lab.stop

        def stop_and_clean(timeout: float = 5.0) -> None:
            stop(timeout)
            certs.cleanup()

        lab.stop = stop_and_clean  # type: ignore[method-assign]
    return lab.start()
