"""The probe contract shared by every probe (after zgrab2's module.go).

A probe has a name, default ports, options, and `async run(ctx, endpoint) -> Record`. It never
raises for anything a peer does: every outcome is a status on the record. Connections go through
`ctx.connect` so the global rate limit and byte caps hold for every probe.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from pacswatch.identity import Identity
from pacswatch.net import pduio
from pacswatch.net.limits import RateLimiter
from pacswatch.net.transport import Connection, open_connection
from pacswatch.record import Record


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Each phase has its own absolute deadline; the endpoint has one over them all."""

    connect: float = 4.0
    association: float = 10.0
    dimse: float = 10.0
    release: float = 2.5
    endpoint: float = 45.0
    http: float = 5.0

    @classmethod
    def scaled(cls, timeout: float) -> "Timeouts":
        """Derive every phase from one `--timeout S` (the connect and response budget)."""
        return cls(
            connect=timeout,
            association=max(timeout, 2 * timeout),
            dimse=max(timeout, 2 * timeout),
            release=min(2.5, timeout),
            endpoint=max(10 * timeout, 4 * timeout + 5),
            http=timeout,
        )


DEFAULT_AE_GUESSES = (
    "ANY-SCP", "ORTHANC", "DCM4CHEE", "CONQUESTSRV1", "STORESCP", "DCMQRSCP", "PACS", "ARCHIVE",
    "SERVER", "PYNETDICOM", "DCM4CHEE_ARC", "WORKLIST", "AS_RECEIVED", "OSIRIX", "HOROS", "KPSERVER",
    "CLEARCANVAS", "DICOMSERVER", "STORE_SCP", "QR_SCP", "PACS_SCP", "MAIN", "AE_TITLE", "DCMSERVER",
)


@dataclass(frozen=True)
class ProbeOptions:
    identity: Identity = field(default_factory=Identity)
    timeouts: Timeouts = field(default_factory=Timeouts)
    find: bool = True
    find_limit: int = 1000
    ae_guess: tuple[str, ...] = DEFAULT_AE_GUESSES
    max_pdu: int = 16384
    # Hard caps on what one peer may make us read (docs/dicom-reference.md §7.12).
    max_received_pdu: int = 1 << 20
    read_cap: int = 4 << 20
    # Ports where TLS is tried first; others fall back to TLS only on an alert or close.
    tls_ports: frozenset[int] = frozenset({2762})
    try_tls_fallback: bool = True
    try_default_credentials: bool = False


@dataclass
class ProbeContext:
    options: ProbeOptions = field(default_factory=ProbeOptions)
    limiter: RateLimiter | None = None
    # Plain TCP DICOM on the PDU engine (net/pduio.py) when it is built; False: asyncio only.
    pdu_engine: bool = field(default_factory=pduio.available)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False, compare=False)
    _link: pduio.PduLink | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, looked up once: on Python 3.11 every lookup is a getpid()
        system call, and a probe needs the loop's clock several times."""
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return self._loop

    def pdu_link(self) -> pduio.PduLink | None:
        """The PDU engine on the running loop, started on first use."""
        if not self.pdu_engine:
            return None
        link = self._link
        if link is None or link.closed or link.loop is not self.loop:
            if link is not None:
                link.shutdown()
            link = self._link = pduio.PduLink(self.loop)
        return link

    def close(self) -> None:
        """Give back what the context holds (the PDU engine's descriptors). A context that is
        never closed gives them back when its event loop and the context are gone."""
        if self._link is not None:
            self._link.shutdown()
            self._link = None

    async def connect(
        self, endpoint: Endpoint, deadline: float, ssl_context: ssl.SSLContext | None = None
    ) -> Connection:
        return await open_connection(
            endpoint.ip,
            endpoint.port,
            deadline=deadline,
            read_cap=self.options.read_cap,
            limiter=self.limiter,
            ssl_context=ssl_context,
        )


class Probe(Protocol):
    name: str
    default_ports: tuple[int, ...]

    async def run(self, ctx: ProbeContext, endpoint: Endpoint) -> Record: ...
