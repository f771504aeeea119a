"""Real servers on loopback for the attribution and notification tests: a DNS server
(dnspython messages over UDP), an RDAP server and a security.txt web server (http.server),
and a guard that refuses any connection, datagram or name lookup off loopback while active.

Nothing here talks to the outside: every server binds 127.x, and the guard (a PEP 578 audit
hook, active only inside the tests that enable it) turns an accidental real lookup into a
failure instead of a packet.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.reversename

# ----------------------------------------------------------------------------- loopback guard

_GUARD = {"active": 0, "violations": []}


def _is_loopback_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None:
        return True  # a passive lookup (bind to any): not a connection
    host = str(host).split("%")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hook(event: str, args: tuple) -> None:
    if not _GUARD["active"]:
        return
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if isinstance(address, tuple) and address and not _is_loopback_host(address[0]):
            _GUARD["violations"].append((event, address))
            raise ConnectionRefusedError(f"test guard: {event} to {address!r} is not loopback")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0]
        if not _is_loopback_host(host):
            _GUARD["violations"].append((event, host))
            raise OSError(f"test guard: {event}({host!r}) would use the system resolver")


_installed = False


@contextmanager
def loopback_only():
    """While active, anything but loopback raises, and is recorded in `violations()`."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    _GUARD["active"] += 1
    try:
        yield
    finally:
        _GUARD["active"] -= 1


def violations() -> list:
    return list(_GUARD["violations"])


# ----------------------------------------------------------------------------- DNS


class DnsServer:
    """An authoritative-looking UDP DNS server holding PTR, A and AAAA records.

    `records[(name, "PTR")] = ["pacs.example.org."]`; add with add_ptr / add_a. `silent` makes it
    drop every query (a resolver timeout)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.address = self.sock.getsockname()
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self.silent = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop = threading.Event()

    @property
    def nameserver(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def add_ptr(self, ip: str, name: str) -> None:
        self.records.setdefault((dns.reversename.from_address(ip).to_text().lower(), "PTR"), []).append(
            name.rstrip(".") + ".")

    def add_a(self, name: str, ip: str) -> None:
        rdtype = "AAAA" if ":" in ip else "A"
        self.records.setdefault((name.rstrip(".").lower() + ".", rdtype), []).append(ip)

    def start(self) -> "DnsServer":
        self.sock.settimeout(0.2)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            name, rdtype = question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, rdtype))
            if self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            values = self.records.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN,
                                                                question.rdtype, values))
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


# ----------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    server_version = "loopback-test"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server.owner  # type: ignore[attr-defined]
        owner.requests.append((self.headers.get("Host"), self.path))
        status, ctype, body, headers = owner.answer(self.headers.get("Host") or "", self.path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class HttpServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.httpd = ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.requests: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def answer(self, host: str, path: str) -> tuple[int, str, bytes, dict]:
        return 404, "text/plain", b"not found", {}


class RdapServer(HttpServer):
    """Serves /bootstrap/{ipv4,ipv6,asn}.json (RFC 9224, pointing at itself) and
    /rdap/ip/ADDR, /rdap/autnum/N from records the test writes. `networks` maps a CIDR to an
    RDAP ip network object; the most specific network containing the address answers.
    `throttle` answers 429 (Retry-After: 0) to the next N RDAP queries."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.networks: dict[str, dict] = {}
        self.autnums: dict[int, dict] = {}
        self.throttle = 0

    @property
    def bootstrap_url(self) -> str:
        return f"{self.base}/bootstrap/"

    def answer(self, host: str, path: str):
        rdap = f"{self.base}/rdap/"
        if path.startswith("/bootstrap/"):
            which = path.rsplit("/", 1)[1]
            if which == "asn.json":
                services = [[[f"{n}-{n}" for n in self.autnums] or ["0-0"], [rdap]]]
            else:
                version = 4 if which == "ipv4.json" else 6
                cidrs = [c for c in self.networks if ipaddress.ip_network(c).version == version]
                services = [[cidrs, [rdap]]] if cidrs else []
            return 200, "application/json", json.dumps({"version": "1.0", "services": services}).encode(), {}
        if self.throttle > 0 and path.startswith("/rdap/"):
            self.throttle -= 1
            return 429, "application/rdap+json", b"{}", {"Retry-After": "0"}
        if path.startswith("/rdap/ip/"):
            addr = ipaddress.ip_address(path[len("/rdap/ip/"):])
            found = [(ipaddress.ip_network(c), v) for c, v in self.networks.items()
                     if ipaddress.ip_network(c).version == addr.version and addr in ipaddress.ip_network(c)]
            if found:
                body = max(found, key=lambda item: item[0].prefixlen)[1]
                return 200, "application/rdap+json", json.dumps(body).encode(), {}
        if path.startswith("/rdap/autnum/"):
            body = self.autnums.get(int(path.rsplit("/", 1)[1]))
            if body:
                return 200, "application/rdap+json", json.dumps(body).encode(), {}
        return 404, "application/rdap+json", b'{"errorCode": 404}', {}


class SecurityTxtServer(HttpServer):
    """Serves /.well-known/security.txt per Host header from `files[domain]`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.files: dict[str, str] = {}

    def answer(self, host: str, path: str):
        domain = host.split(":")[0].lower()
        if path == "/.well-known/security.txt" and domain in self.files:
            return 200, "text/plain; charset=utf-8", self.files[domain].encode(), {}
        return 404, "text/html", b"<html>not here</html>", {}


def vcard(fn: str, email: str | None = None, kind: str = "org") -> list:
    props = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn], ["kind", {}, "text", kind]]
    if email:
        props.append(["email", {}, "text", email])
    return ["vcard", props]


def rdap_network(cidr: str, name: str, *, handle: str, org: str | None = None, abuse: str | None = None,
                 tech: str | None = None, country: str = "ZZ", origin_as: list[int] | None = None) -> dict:
    """An RFC 9083 ip network object, shaped like the RIRs' (abuse nested in the org, as ARIN does)."""
    net = ipaddress.ip_network(cidr)
    entities: list[dict] = []
    if org:
        org_entity = {"objectClassName": "entity", "handle": f"{handle}-ORG", "roles": ["registrant"],
                      "vcardArray": vcard(org), "entities": []}
        if abuse:
            org_entity["entities"].append({"objectClassName": "entity", "handle": f"{handle}-ABUSE",
                                           "roles": ["abuse"], "vcardArray": vcard("Abuse desk", abuse, "group")})
        entities.append(org_entity)
    elif abuse:
        entities.append({"objectClassName": "entity", "handle": f"{handle}-ABUSE", "roles": ["abuse"],
                         "vcardArray": vcard("Abuse desk", abuse, "group")})
    if tech:
        entities.append({"objectClassName": "entity", "handle": f"{handle}-TECH", "roles": ["technical"],
                         "vcardArray": vcard("NOC", tech, "group")})
    body = {"objectClassName": "ip network", "handle": handle, "name": name, "country": country,
            "startAddress": str(net.network_address), "endAddress": str(net.broadcast_address),
            "ipVersion": f"v{net.version}", "rdapConformance": ["rdap_level_0", "cidr0"],
            "cidr0_cidrs": [{"v4prefix" if net.version == 4 else "v6prefix": str(net.network_address),
                             "length": net.prefixlen}],
            "entities": entities}
    if origin_as:
        body["arin_originas0_originautnums"] = origin_as
    return body


def rdap_autnum(asn: int, name: str, holder: str) -> dict:
    return {"objectClassName": "autnum", "handle": f"AS{asn}", "startAutnum": asn, "endAutnum": asn, "name": name,
            "entities": [{"objectClassName": "entity", "roles": ["registrant"], "vcardArray": vcard(holder)}]}
