"""Owner lookups against hostile servers really started on loopback (issue 11): a security.txt or
RDAP server that sends a compression bomb, drips a byte at a time, redirects elsewhere, or puts
terminal escapes and CR/LF in what it says; a domain that resolves into an opted-out or
out-of-scope network. Each lookup must end by its deadline, stay within its memory cap, connect
to nothing it must not, and keep only clean text and single, valid e-mail addresses.

DNS is a real server on loopback (tests/attribution/loopback_servers.py); the guard there fails
any connection or name lookup off loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS / "attribution") not in sys.path:  # loopback_servers (tests/ is not a package)
    sys.path.insert(0, str(_TESTS / "attribution"))

from loopback_servers import (
    DnsServer,
    HttpServer,
    RdapServer,
    SecurityTxtServer,
    loopback_only,
    rdap_network,
    violations,
)

from pacswatch.attribution import facts as F
from pacswatch.attribution.attributor import AttributionConfig, Attributor
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.rdap import RdapConfig
from pacswatch.attribution.securitytxt import checked_contacts
from pacswatch.campaign.scope import contact_check

VALID_FILE = "Contact: mailto:security@example.org\nExpires: 2099-01-01T00:00:00Z\n"
HOST_IP, HOST_NAME = "192.0.2.10", "pacs.radiology.example.org"  # the exposed server: never contacted


@pytest.fixture(autouse=True)
def _loopback_only():
    with loopback_only():
        yield
    assert violations() == []


@pytest.fixture
def dns_server():
    server = DnsServer("127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture
def servers():
    """`servers(server)` starts a server and returns it; each is stopped when the test ends."""
    started = []

    def start(server):
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def confirmed_host(dns: DnsServer, web_ip: str) -> None:
    """HOST_IP has a forward-confirmed name in example.org, whose web site is at `web_ip`."""
    dns.add_ptr(HOST_IP, HOST_NAME)
    dns.add_a(HOST_NAME, HOST_IP)
    dns.add_a("example.org", web_ip)


def config(dns: DnsServer, *, port: int, rdap_server: str | None = None, **extra) -> AttributionConfig:
    rdap = RdapConfig(server=rdap_server, min_interval=0.0, timeout=extra.pop("rdap_timeout", 15.0))
    return AttributionConfig(resolver=ResolverConfig((dns.nameserver,), timeout=1.0), rdap=rdap,
                             security_txt_scheme="http", security_txt_port=port, **extra)


def attribute(cfg: AttributionConfig, ip: str = HOST_IP, **kwargs):
    async def go():
        async with Attributor(cfg, **kwargs) as attributor:
            # A bound of our own, so that a regression fails the test instead of hanging it.
            return await asyncio.wait_for(attributor.attribute(ip), 60)
    return asyncio.run(go())


def notes_and_errors(facts) -> list[str]:
    return [f.detail.get("note") or f.detail.get("error") for f in facts if f.kind in (F.NOTE, F.ERROR)]


# ----------------------------------------------------------------------------- hostile servers


class Answering(HttpServer):
    """Answers every GET with one fixed (status, content type, body, headers)."""

    def __init__(self, host: str, status: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
        super().__init__(host)
        self.fixed = (status, ctype, body, headers or {})

    def answer(self, host: str, path: str):
        return self.fixed


class Redirecting(SecurityTxtServer):
    """Serves `files` like SecurityTxtServer, and redirects `redirects[path]` to a Location."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.redirects: dict[str, str] = {}
        self.moved: dict[str, str] = {}  # path -> file text, served at that path for any host

    def answer(self, host: str, path: str):
        if path in self.redirects:
            return 302, "text/html", b"moved", {"Location": self.redirects[path]}
        if path in self.moved:
            return 200, "text/plain", self.moved[path].encode(), {}
        return super().answer(host, path)


class DripServer:
    """HTTP that never finishes: a 200 with a long Content-Length, then one body byte every
    `interval` seconds. A per-read timeout never fires; only an overall deadline ends it."""

    def __init__(self, host: str, interval: float = 2.0, ctype: str = "text/plain") -> None:
        self.sock = socket.create_server((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self.interval, self.ctype = interval, ctype
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> DripServer:
        self.sock.settimeout(0.1)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096) or b"\r\n\r\n"
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {self.ctype}\r\nContent-Length: 100000\r\n\r\n"
                             .encode())
                while not self._stop.wait(self.interval):
                    conn.sendall(b"{" if self.ctype.endswith("json") else b"#")
            except OSError:
                return  # the client gave up: what we want


def gzip_stream(parts, level: int = 9) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return b"".join(c.compress(p) for p in parts) + c.flush()


# ----------------------------------------------------------------------------- memory, in a child

CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from loopback_servers import loopback_only, violations
from pacswatch.attribution.attributor import AttributionConfig, Attributor
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.rdap import RdapConfig

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

args = json.loads(sys.argv[2])
cfg = AttributionConfig(resolver=ResolverConfig(tuple(args["nameservers"]), timeout=1.0),
                        rdap=RdapConfig(server=args["rdap"], min_interval=0.0),
                        security_txt_scheme="http", security_txt_port=args["port"])

async def main():
    async with Attributor(cfg) as attributor:
        attributor.http  # load httpx and make the client before the baseline
        before = status("VmRSS")
        _, facts = await attributor.attribute(args["ip"])
        return before, facts

with loopback_only():
    before, facts = asyncio.run(main())
print(json.dumps({"rss_before_kb": before, "hwm_kb": status("VmHWM"), "violations": len(violations()),
                  "facts": [f.to_dict() for f in facts]}, default=str))
"""


def attribute_in_child(*, dns: DnsServer | None, port: int | None, rdap: str | None, ip: str = HOST_IP) -> dict:
    args = {"nameservers": [dns.nameserver] if dns else [], "rdap": rdap, "port": port, "ip": ip}
    done = subprocess.run([sys.executable, "-c", CHILD, str(_TESTS / "attribution"), json.dumps(args)],
                          capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["violations"] == 0
    out["growth_mb"] = (out["hwm_kb"] - out["rss_before_kb"]) / 1024
    return out


@pytest.fixture(scope="module")
def gzip_gzip_bomb() -> bytes:
    """512 MiB of zeros, gzipped twice: about a kilobyte on the wire."""
    inner = gzip_stream(bytes(1 << 20) for _ in range(512))
    return gzip_stream([inner])


def test_security_txt_gzip_gzip_bomb_is_refused_with_bounded_memory(dns_server, servers, gzip_gzip_bomb):
    bomb = servers(Answering("127.0.0.1", 200, "text/plain", gzip_gzip_bomb, {"Content-Encoding": "gzip, gzip"}))
    confirmed_host(dns_server, bomb.host)
    out = attribute_in_child(dns=dns_server, port=bomb.port, rdap=None)
    assert len(gzip_gzip_bomb) < 4096 and bomb.requests  # the bomb was served, and is tiny on the wire
    assert out["growth_mb"] < 48, out["growth_mb"]  # 512 MiB decoded if the layers were undone
    errors = [f["detail"]["error"] for f in out["facts"] if f["kind"] == F.ERROR and f["subject"] == "example.org"]
    base = f"http://example.org:{bomb.port}"
    refused = "refused: Content-Encoding 'gzip, gzip' stacks 2 codings (at most one is undone)"
    assert errors == [f"{base}/.well-known/security.txt from 127.0.0.1: {refused}",
                      f"{base}/security.txt from 127.0.0.1: {refused}"]
    assert not [f for f in out["facts"] if f["kind"] == F.SECURITY_TXT]


def test_rdap_gzip_reply_of_400_mb_is_capped_with_bounded_memory(servers):
    body = gzip_stream([b'{"objectClassName": "ip network", "handle": "NET-X", "name": "',
                        *(b"A" * (1 << 20) for _ in range(400)), b'"}'])
    assert len(body) < 600_000  # the "500 KB gzip reply"
    rdap = servers(Answering("127.0.0.1", 200, "application/rdap+json", body, {"Content-Encoding": "gzip"}))
    out = attribute_in_child(dns=None, port=None, rdap=f"{rdap.base}/rdap/", ip="203.0.113.5")
    assert out["growth_mb"] < 48, out["growth_mb"]  # 400 MiB decoded before any size check, before the fix
    errors = [f["detail"]["error"] for f in out["facts"] if f["kind"] == F.ERROR]
    assert errors == [f"{rdap.base}/rdap/ip/203.0.113.5: refused: larger than 1048576 bytes once decoded"]


def test_a_body_is_decoded_through_one_layer(dns_server, servers):
    """The same path, for an honest server: one gzip layer is undone and the file is read."""
    web = servers(Answering("127.0.0.1", 200, "text/plain", gzip_stream([VALID_FILE.encode()]),
                            {"Content-Encoding": "gzip"}))
    confirmed_host(dns_server, web.host)
    attribution, facts = attribute(config(dns_server, port=web.port))
    assert attribution.contact.address == "security@example.org" and notes_and_errors(facts) == []


# ----------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize("where", ["security.txt", "rdap"])
def test_a_dripping_server_is_left_at_the_lookups_deadline(dns_server, servers, where):
    drip = servers(DripServer("127.0.0.1", ctype="text/plain" if where == "security.txt" else "application/rdap+json"))
    confirmed_host(dns_server, drip.host)
    cfg = config(dns_server, port=drip.port, rdap_server=f"{drip.base}/rdap/" if where == "rdap" else None,
                 security_txt_timeout=3.0, rdap_timeout=3.0)
    started = time.monotonic()
    _attribution, facts = attribute(cfg)
    elapsed = time.monotonic() - started
    assert drip.connections >= 1
    # 3 s deadline; the margin is for a loaded machine, not a speed claim. Before the fix a
    # byte every 2 s kept the read timeout (10 s) from ever firing: the lookup took hours.
    assert 2.5 <= elapsed < 10, elapsed
    errors = [f for f in facts if f.kind == F.ERROR and f.value == where]
    assert [f.detail["error"] for f in errors] == ["no answer within the lookup's 3 s deadline"]


def test_addresses_that_share_a_domain_share_its_lookup(dns_server, servers):
    """Three hosts of example.org attributed at once: one lookup of its security.txt, so the
    dripping server gets one connection (not one per address) and all three end by its deadline."""
    drip = servers(DripServer("127.0.0.1"))
    ips = ["192.0.2.31", "192.0.2.32", "192.0.2.33"]
    for ip in ips:
        name = f"pacs{ip.rsplit('.', 1)[1]}.example.org"
        dns_server.add_ptr(ip, name)
        dns_server.add_a(name, ip)
    dns_server.add_a("example.org", drip.host)
    cfg = config(dns_server, port=drip.port, security_txt_timeout=3.0)

    async def go():
        async with Attributor(cfg) as attributor:
            return await asyncio.wait_for(attributor.attribute_many(ips), 60)
    started = time.monotonic()
    results = asyncio.run(go())
    elapsed = time.monotonic() - started
    assert drip.connections == 1 and elapsed < 10, (drip.connections, elapsed)
    for ip in ips:
        errors = [f.detail["error"] for f in results[ip][1] if f.kind == F.ERROR]
        assert errors == ["no answer within the lookup's 3 s deadline"]


def test_one_address_is_bounded_by_its_own_deadline(dns_server, servers):
    """RDAP and security.txt both drip, each within its own 3 s deadline: the address's 4 s
    deadline ends the whole, and what was learned before (the PTR) is kept."""
    drip = servers(DripServer("127.0.0.1"))
    confirmed_host(dns_server, drip.host)
    cfg = config(dns_server, port=drip.port, rdap_server=f"{drip.base}/rdap/", security_txt_timeout=3.0,
                 rdap_timeout=3.0, address_deadline_s=4.0)
    started = time.monotonic()
    _attribution, facts = attribute(cfg)
    elapsed = time.monotonic() - started
    assert 3.5 <= elapsed < 10, elapsed
    assert [f.value for f in F.of_kind(facts, F.PTR)] == [HOST_NAME]
    assert facts[-1].kind == F.ERROR and facts[-1].detail["error"] == (
        "stopped at the 4 s deadline of one address; the rest is asked next time")


def test_the_attribution_after_a_scan_ends_by_its_deadline(dns_server, servers, tmp_path):
    """Two exposed hosts whose domains drip (each lookup allowed 30 s) and one that answers at
    once: the pass after the scan stops at its 2 s deadline, keeps the one it finished, and
    leaves the other two to `pacswatch attribute`."""
    from dataclasses import replace

    from pacswatch.notify.config import Config
    from pacswatch.notify.service import attribute_after_scan
    from pacswatch.notify.store import NotifyStore
    from pacswatch.record import Record
    from pacswatch.store.repository import Repository

    drip = servers(DripServer("127.0.0.1"))
    for ip, domain in (("192.0.2.41", "d41.example"), ("192.0.2.42", "d42.example")):
        dns_server.add_ptr(ip, f"pacs.{domain}")
        dns_server.add_a(f"pacs.{domain}", ip)
        dns_server.add_a(domain, drip.host)
    attribution = replace(config(dns_server, port=drip.port), security_txt_timeout=30.0, address_deadline_s=30.0,
                          after_scans_deadline_s=2.0)
    records = [Record(ip=ip, port=104, status="success", service="dicom", severity="critical")
               for ip in ("192.0.2.41", "192.0.2.42", "192.0.2.43")]
    started = time.monotonic()
    with Repository.open(str(tmp_path / "after.db")) as repo:
        line = attribute_after_scan(repo.engine, Config(attribution=attribution), records,
                                    may_contact=contact_check(repo))
        stored = NotifyStore(repo.engine).attributions()
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # 30 s or more without the pass deadline
    assert "attributed 1 exposed addresses" in line and line.endswith("; 2 more: pacswatch attribute"), line
    assert set(stored) == {"192.0.2.43"}


# ----------------------------------------------------------------------------- redirects


def test_a_security_txt_redirect_to_another_origin_is_not_followed(dns_server, servers):
    web = servers(Redirecting("127.0.0.1"))
    canary = servers(SecurityTxtServer("127.0.0.2"))
    canary.files["example.org"] = VALID_FILE
    for path in ("/.well-known/security.txt", "/security.txt"):
        web.redirects[path] = f"http://127.0.0.2:{canary.port}/.well-known/security.txt"
    confirmed_host(dns_server, web.host)
    attribution, facts = attribute(config(dns_server, port=web.port))
    assert canary.requests == []
    assert attribution.contact is None and not F.of_kind(facts, F.SECURITY_TXT)
    target = f"http://127.0.0.2:{canary.port}/.well-known/security.txt"
    assert f"redirect to another origin not followed: {target}" in notes_and_errors(facts)[0]


def test_a_same_origin_redirect_is_followed(dns_server, servers):
    web = servers(Redirecting("127.0.0.1"))
    web.redirects["/.well-known/security.txt"] = "/files/security.txt"
    web.moved["/files/security.txt"] = VALID_FILE
    confirmed_host(dns_server, web.host)
    attribution, _facts = attribute(config(dns_server, port=web.port))
    assert attribution.contact.address == "security@example.org"
    assert attribution.contact.source == f"security.txt:http://example.org:{web.port}/files/security.txt"
    assert [path for _, path in web.requests] == ["/.well-known/security.txt", "/files/security.txt"]


def test_a_malformed_location_is_a_note_and_the_next_path_is_tried(dns_server, servers):
    web = servers(Redirecting("127.0.0.1"))
    web.redirects["/.well-known/security.txt"] = "http://[oops/"
    web.moved["/security.txt"] = VALID_FILE
    confirmed_host(dns_server, web.host)
    attribution, facts = attribute(config(dns_server, port=web.port))
    assert attribution.contact.address == "security@example.org"
    assert notes_and_errors(facts) == [(f"http://example.org:{web.port}/.well-known/security.txt from 127.0.0.1: "
                                        "redirect to a malformed Location not followed: 'http://[oops/'")]


def test_an_rdap_redirect_to_another_origin_is_not_followed(servers):
    canary = servers(RdapServer("127.0.0.2"))
    canary.networks["203.0.113.0/24"] = rdap_network("203.0.113.0/24", "CANARY", handle="NET-C", abuse="c@example.net")
    rdap = servers(Answering("127.0.0.1", 301, "application/rdap+json", b"{}",
                             {"Location": f"{canary.base}/rdap/ip/203.0.113.5"}))
    cfg = AttributionConfig(rdap=RdapConfig(server=f"{rdap.base}/rdap/", min_interval=0.0))
    attribution, facts = attribute(cfg, "203.0.113.5")
    assert canary.requests == [] and attribution.contact is None
    assert notes_and_errors(facts) == [(f"{rdap.base}/rdap/ip/203.0.113.5: redirect to another origin not followed: "
                                        f"{canary.base}/rdap/ip/203.0.113.5")]


# ----------------------------------------------------------------------------- scope and opt-out


@pytest.mark.parametrize("refusal", ["opt-out", "scope"])
def test_no_security_txt_fetch_from_an_address_opted_out_or_out_of_scope(dns_server, servers, tmp_path, refusal):
    """The domain resolves to a canary whose network opted out (or lies outside the scope kept in
    the database): attribution through the service (as `pacswatch attribute` runs it) must not
    connect to it, and says why in the facts."""
    from pacswatch.notify.config import Config
    from pacswatch.notify.service import attribute_async
    from pacswatch.store.repository import Repository

    canary = servers(SecurityTxtServer("127.0.0.77"))
    canary.files["example.org"] = VALID_FILE
    confirmed_host(dns_server, canary.host)
    cfg = Config(attribution=config(dns_server, port=canary.port))
    with Repository.open(str(tmp_path / "scope.db")) as repo:
        if refusal == "opt-out":
            repo.add_optout("127.0.0.64/26", "soc@example.org")
        else:
            repo.add_scope("127.0.0.0/26")  # HOST_IP is not contacted; the canary is outside
        results = asyncio.run(attribute_async(repo.engine, cfg, may_contact=contact_check(repo), ips=[HOST_IP]))
    attribution, _changed = results[HOST_IP]
    assert canary.requests == [] and attribution.contact is None
    # The control: the same world without the refusal does reach the canary.
    with Repository.open(str(tmp_path / "open.db")) as repo:
        results = asyncio.run(attribute_async(repo.engine, cfg, may_contact=contact_check(repo), ips=[HOST_IP]))
    assert results[HOST_IP][0].contact.address == "security@example.org" and canary.requests


def test_the_refusal_is_a_note_in_the_provenance(dns_server, servers):
    canary = servers(SecurityTxtServer("127.0.0.77"))
    canary.files["example.org"] = VALID_FILE
    confirmed_host(dns_server, canary.host)
    blocked = {"127.0.0.77": "on the opt-out list (entry 1, 127.0.0.77, asked 2026-01-01)"}
    _attribution, facts = attribute(config(dns_server, port=canary.port), may_contact=blocked.get)
    assert canary.requests == []
    assert notes_and_errors(facts) == [("example.org resolves to 127.0.0.77, not asked: on the opt-out list "
                                        "(entry 1, 127.0.0.77, asked 2026-01-01)")]


def test_a_domain_resolving_to_link_local_or_the_metadata_service_is_not_asked(dns_server):
    """The default blocklist refuses link-local addresses (the cloud metadata service among them):
    a domain's owner who points its name there gets no request from us. The loopback guard would
    refuse the connection anyway (and record it as a violation); the fact must say 'not asked'."""
    dns_server.add_ptr(HOST_IP, HOST_NAME)
    dns_server.add_a(HOST_NAME, HOST_IP)
    dns_server.add_a("example.org", "169.254.169.254")
    dns_server.add_a("example.org", "fe80::1")
    _attribution, facts = attribute(config(dns_server, port=80))
    notes = notes_and_errors(facts)
    assert len(notes) == 2, notes
    assert any(n.startswith("example.org resolves to 169.254.169.254, not asked: 169.254.0.0/16") for n in notes)
    assert any(n.startswith("example.org resolves to fe80::1, not asked: fe80::/10") for n in notes)


# ----------------------------------------------------------------------------- what enters


def test_a_contact_line_with_two_addresses_gives_no_recipient(dns_server, servers):
    web = servers(SecurityTxtServer("127.0.0.1"))
    web.files["example.org"] = ("Contact: mailto:a@example.org, b@example.org\n"
                                "Contact: https://example.org/report\nExpires: 2099-01-01T00:00:00Z\n")
    confirmed_host(dns_server, web.host)
    attribution, facts = attribute(config(dns_server, port=web.port))
    assert attribution.contact is None
    assert [f.value for f in F.of_kind(facts, F.SECURITY_TXT)] == ["https://example.org/report"]
    [note] = notes_and_errors(facts)  # the reason's wording is mailaddr.py's
    assert note.startswith("Contact 'mailto:a@example.org, b@example.org' dropped: not exactly one")


@pytest.mark.parametrize(("line", "kept"), [
    ("mailto:a@example.org, b@example.org", []),
    ("mailto:a@example.org,b@example.org", []),
    ("mailto:a%40example.org%2Cb%40example.org", []),
    ("mailto:Name <a@example.org>", []),
    ("mailto:a@example.org\r\nBcc: b@example.org", []),
    ("mailto:a@example.org?subject=hello%0d%0aBcc:%20b@example.org", ["mailto:a@example.org"]),
    ("mailto:a%40example.org", ["mailto:a@example.org"]),
    ("https://example.org/report", ["https://example.org/report"]),
    ("https://example.org/a https://evil.example/", []),
    ("tel:+1-555-0100", []),
])
def test_each_contact_line_yields_at_most_one_checked_mailbox(line, kept):
    got, notes = checked_contacts([line])
    assert got == kept and len(notes) == 1 - len(kept)
    assert all("\r" not in n and "\n" not in n for n in notes)


def test_rdap_text_is_cleaned_and_a_crlf_contact_is_dropped_with_a_note(servers):
    rdap = servers(RdapServer("127.0.0.1"))
    network = rdap_network("203.0.113.0/24", "EVIL\x1b[31mNET\r\nBcc: x", handle="NET\x1b]8;;x\x07",
                           org="Evil\x1b[2J Org\r\nX: y", abuse="abuse@example.net\r\nBcc: victim@example.org",
                           tech="noc@example.net")
    rdap.networks["203.0.113.0/24"] = network
    cfg = AttributionConfig(rdap=RdapConfig(bootstrap_url=rdap.bootstrap_url, min_interval=0.0))
    attribution, facts = attribute(cfg, "203.0.113.5")
    assert F.first_value(facts, F.RDAP_NETWORK) == "EVIL\\x1b[31mNET\\x0d\\x0aBcc: x"
    assert F.first_value(facts, F.RDAP_ORG) == "Evil\\x1b[2J Org\\x0d\\x0aX: y"
    assert F.of_kind(facts, F.RDAP_NETWORK)[0].detail["handle"] == "NET\\x1b]8;;x\\x07"
    assert F.of_kind(facts, F.RDAP_ABUSE) == []
    assert [f.value for f in F.of_kind(facts, F.RDAP_CONTACT)] == ["noc@example.net"]
    assert attribution.contact.address == "noc@example.net" and attribution.owner_name == "Evil\\x1b[2J Org\\x0d\\x0aX: y"
    [note] = notes_and_errors(facts)  # the reason's wording is mailaddr.py's
    assert note.startswith("contact of NET\\x1b]8;;x\\x07-ABUSE dropped: control character in e-mail address ")
    assert "abuse@example.net" in note and "Bcc: victim@example.org" in note
    strings = [f.value for f in facts] + [str(v) for f in facts for v in f.detail.values()]
    strings += [attribution.owner_name, *attribution.reasons]
    assert not [s for s in strings if any(c in s for c in "\x1b\r\n\x07")]


def test_a_ptr_name_that_is_not_a_host_name_is_shown_clean_and_never_used(dns_server, servers):
    web = servers(SecurityTxtServer("127.0.0.1"))
    web.files["example.org"] = VALID_FILE
    dns_server.add_ptr(HOST_IP, "pacs\\027[31m.example.org")  # an ESC byte in a label
    dns_server.add_a("pacs\\027[31m.example.org", HOST_IP)
    dns_server.add_a("example.org", web.host)
    attribution, facts = attribute(config(dns_server, port=web.port))
    ptr = F.of_kind(facts, F.PTR)
    assert [(f.value, f.detail["confirmed"]) for f in ptr] == [("pacs\\027[31m.example.org", False)]
    assert web.requests == [] and attribution.contact is None
