"""The lab runner: start every simulated server on loopback, publish the manifest, stop cleanly.

Default layout: each endpoint on its own address, base + its fixed offset (127.42.0.10 for the
open archive, ...), on port 11112 (TLS endpoints on 2762, the DICOM TLS port). `port=0` gives
every endpoint a free port, so several labs can run at once (tests), also on one base address.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import sys
import threading
from typing import Any, Iterable, TextIO

from pacswatch.lab.certs import LabCertificates, make_certificates
from pacswatch.lab.data import planted_strings
from pacswatch.lab.fast import FastResponder, check_loopback
from pacswatch.lab.hostile import HostilePeers
from pacswatch.lab.manifest import FAST, HOSTILE, TRAP, LabEndpoint, resolve_kinds
from pacswatch.lab.pacs import TLS_KINDS, PacsServer, QuietFilter
from pacswatch.lab.traps import ACCEPT_ALL_PORTS, AcceptAll, HoneypotServer

DEFAULT_BASE_IP = "127.42.0.0"
DEFAULT_PORT = 11112
DEFAULT_TLS_PORT = 2762


class Lab:
    """`with Lab() as lab:` or `async with Lab(port=0) as lab:`; `lab.manifest` lists endpoints.

    names: the kinds to run (None: the default set; "all": every kind, big-archive included).
    drip_interval: seconds between the slow peers' bytes. pending_delay: seconds before each
    C-FIND pending response of the archives (tests of C-CANCEL). quiet: hide the lab's own
    pynetdicom log records (they print the synthetic patients the lab serves).
    """

    def __init__(self, base_ip: str = DEFAULT_BASE_IP, *, port: int = DEFAULT_PORT, tls_port: int | None = None,
                 names: Iterable[str] | None = None, drip_interval: float = 1.0, pending_delay: float = 0.0,
                 hold: float = 900.0, quiet: bool = True) -> None:
        base = int(ipaddress.ip_address(check_loopback(base_ip)))
        self.base_ip = base_ip
        self.port = port
        self.tls_port = tls_port if tls_port is not None else (0 if port == 0 else DEFAULT_TLS_PORT)
        self.specs = resolve_kinds(names)
        self._planned = [(spec, check_loopback(str(ipaddress.ip_address(base + spec.host)))) for spec in self.specs]
        self.drip_interval = drip_interval
        self.pending_delay = pending_delay
        self.hold = hold
        self.manifest: list[LabEndpoint] = []
        self.certificates: LabCertificates | None = None
        self._quiet = QuietFilter() if quiet else None
        self._pacs: list[PacsServer] = []
        self._hostile: HostilePeers | None = None
        self._fast: FastResponder | None = None
        self._accept_all: AcceptAll | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> list[LabEndpoint]:
        with self._lock:
            if self.manifest:
                return self.manifest
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            return self.manifest

    def _start(self) -> None:
        if self._quiet is not None:
            self._quiet.install()
        tls_ips = [ip for spec, ip in self._planned if spec.tls]
        certificates = None
        if tls_ips:
            self.certificates = certificates = make_certificates(tls_ips)
        ports: dict[str, int] = {}
        for spec, ip in self._planned:
            if spec.family == TRAP:
                ports[spec.kind] = self._start_trap(spec.kind, ip)
            elif spec.family not in (HOSTILE, FAST):
                ssl_context = None
                if spec.kind in TLS_KINDS:
                    assert certificates is not None  # made above for every TLS endpoint
                    ssl_context = certificates.server_context(require_client_cert=spec.kind == "tls-client-cert")
                server = PacsServer(spec.kind, ip, self.tls_port if spec.tls else self.port, ssl_context=ssl_context,
                                    pending_delay=self.pending_delay, quiet=self._quiet)
                self._pacs.append(server)
                ports[spec.kind] = _bind(server.start, server.ip, server.port)
        hostile = [(spec.kind, ip, self.port) for spec, ip in self._planned if spec.family == HOSTILE]
        if hostile:
            self._hostile = HostilePeers(hostile, hold=self.hold, drip_interval=self.drip_interval)
            ports.update(zip((k for k, _, _ in hostile), _bind(self._hostile.start, hostile[0][1], self.port)))
        fast = [(spec.kind, ip) for spec, ip in self._planned if spec.family == FAST]
        if fast:
            self._fast = FastResponder([ip for _, ip in fast], [self.port], workers=0)
            bound = _bind(self._fast.start, fast[0][1], self.port)
            ports.update(zip((k for k, _ in fast), (p for _, p in bound)))
        self.manifest = [
            LabEndpoint(spec.kind, ip, ports[spec.kind], spec.kind, dict(spec.expected), spec.family,
                        "tls" if spec.tls else "tcp", spec.description)
            for spec, ip in self._planned
        ]

    def _start_trap(self, kind: str, ip: str) -> int:
        if kind == "honeypot":
            server = HoneypotServer(ip, self.port, quiet=self._quiet)
            self._pacs.append(server)
            return _bind(server.start, ip, self.port)
        self._accept_all = AcceptAll(ip, self.port, ACCEPT_ALL_PORTS if self.port else None)
        return _bind(self._accept_all.start, ip, self.port)

    @property
    def random_port_options(self) -> dict[str, Any]:
        """ProbeOptions for the random port check that judges the accept-all host (its block of
        ports); empty when the lab runs no accept-all host."""
        if self._accept_all is None or self._accept_all.block is None:
            return {}
        return {"random_ports": 4, "random_port_range": self._accept_all.block}

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        for server in self._pacs:
            server.stop()
        self._pacs.clear()
        if self._hostile is not None:
            self._hostile.stop()
            self._hostile = None
        if self._fast is not None:
            self._fast.stop()
            self._fast = None
        if self._accept_all is not None:
            self._accept_all.stop()
            self._accept_all = None
        if self.certificates is not None:
            self.certificates.cleanup()
            self.certificates = None
        if self._quiet is not None:
            self._quiet.uninstall()
        self.manifest = []

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> "Lab":
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    # ------------------------------------------------------------------ views

    def endpoint(self, name: str) -> LabEndpoint:
        for endpoint in self.manifest:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)

    def targets(self) -> list[tuple[str, int]]:
        return [endpoint.address for endpoint in self.manifest]

    def planted_strings(self) -> list[str]:
        """Identifying values the lab serves (synthetic patients): none may reach any output."""
        values = set(planted_strings())
        if any(spec.kind == "big-archive" for spec in self.specs):
            from pacswatch.lab.pacs import BIG_ARCHIVE
            from pacswatch.lab.data import make_archive

            values.update(planted_strings(make_archive(*BIG_ARCHIVE)))
        return sorted(values)

    def to_json(self) -> dict[str, Any]:
        return {
            "base_ip": self.base_ip,
            "endpoints": [endpoint.to_dict() for endpoint in self.manifest],
        }


def _bind(start, ip: str, port: int):
    try:
        return start()
    except OSError as exc:
        # Ports are fixed only on the command line's lab; from Python, port=0 takes free ones.
        hint = " (is another lab running? `pacswatch lab --base-ip 127.43.0.0` uses other addresses)" if port else ""
        raise OSError(exc.errno, f"lab could not listen on {ip}:{port}: {exc.strerror or exc}{hint}") from exc


def format_table(manifest: Iterable[LabEndpoint]) -> str:
    rows = [("ENDPOINT", "ADDRESS", "TLS", "EXPECT STATUS", "SEVERITY", "WHAT")]
    for e in manifest:
        status = e.expected.get("status", "-")
        if isinstance(status, dict):
            status = "|".join(status.get("one_of", ["?"]))
        severity = e.expected.get("severity", "-")
        rows.append((e.name, f"{e.ip}:{e.port}", "tls" if e.transport == "tls" else "", str(status),
                     "none" if severity is None else str(severity), e.description))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5] for row in rows)


def run_lab_forever(base_ip: str = DEFAULT_BASE_IP, *, port: int = DEFAULT_PORT, tls_port: int | None = None,
                    names: Iterable[str] | None = None, manifest_path: str | None = None,
                    out: TextIO | None = None, stop: threading.Event | None = None) -> int:
    """`pacswatch lab`: start the lab, print its endpoints, wait for Ctrl-C (or `stop`), stop it."""
    out = out or sys.stdout
    stop = stop or threading.Event()
    with Lab(base_ip, port=port, tls_port=tls_port, names=names) as lab:
        print(f"pacswatch lab: {len(lab.manifest)} simulated endpoints on loopback "
              "(synthetic data only)\n", file=out)
        print(format_table(lab.manifest), file=out)
        if manifest_path:
            with open(manifest_path, "w", encoding="utf-8") as fh:
                json.dump(lab.to_json(), fh, indent=2)
            print(f"\nmanifest written to {manifest_path}", file=out)
        addresses = sorted({e.ip for e in lab.manifest}, key=ipaddress.ip_address)
        ports = sorted({e.port for e in lab.manifest})
        print(f"\ntargets: {addresses[0]}-{addresses[-1]}, ports {','.join(map(str, ports))}", file=out)
        print("press Ctrl-C to stop", file=out, flush=True)
        previous = _on_sigterm(stop)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        print("\nstopping the lab", file=out, flush=True)
    return 0


def _on_sigterm(stop: threading.Event):
    """SIGTERM stops the lab cleanly too (certificates removed, sockets closed); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
