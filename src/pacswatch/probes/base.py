"""The probe contract shared by every probe (after zgrab2's module.go).

A probe has a name, default ports, options, and `async run(ctx, endpoint) -> Record`. It never
raises for anything a peer does: every outcome is a status on the record. The record holds
facts; the runner assesses it (scan/runner.probe_endpoint), never the probe. Connections go through
`ctx.connect` so the global rate limit and byte caps hold for every probe.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Protocol

from pacswatch.identity import Identity
from pacswatch.net.limits import CONNECTS_AT_ONCE, ConnectGate, RateLimiter
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


# Called AE titles tried after the peer rejected our random one as "called AE title not
# recognised" (docs/dicom-reference.md §3.5): product defaults documented in §4.2, of products
# that check the called AE (a product that accepts any title never needs its own guessed), most
# likely first. Each guess is a new association (the peer closes after an A-ASSOCIATE-RJ), so
# the list is short: 24 titles made a rejecting endpoint cost 25 associations (bench/README.md).
DEFAULT_AE_GUESSES = ("DCM4CHEE", "ORTHANC", "ANY-SCP", "DCMQRSCP", "CONQUESTSRV1", "WORKLIST")


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
    # The opt-in deception check: this many random ports of this range, on each address whose
    # probed port accepted TCP (probes/portcheck.py); 0: off.
    random_ports: int = 0
    random_port_range: tuple[int, int] = (49152, 65535)


@dataclass
class ProbeContext:
    options: ProbeOptions = field(default_factory=ProbeOptions)
    limiter: RateLimiter | None = None
    # Connects in flight at once, over every probe of the scan (net/transport.py says why).
    connecting: ConnectGate = field(default_factory=lambda: ConnectGate(CONNECTS_AT_ONCE), repr=False, compare=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running event loop, looked up once: on Python 3.11 every lookup is a getpid()
        system call, and a probe needs the loop's clock several times."""
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def connect(
        self, endpoint: Endpoint, deadline: float, ssl_context: ssl.SSLContext | None = None
    ) -> Connection:
        """A connection set up before `deadline` and within the connect timeout of the connect
        being issued (not of this call: waiting for a slot or a token is not the peer's time)."""
        return await open_connection(
            endpoint.ip,
            endpoint.port,
            deadline=deadline,
            read_cap=self.options.read_cap,
            limiter=self.limiter,
            ssl_context=ssl_context,
            connect_timeout=self.options.timeouts.connect,
            gate=self.connecting,
            loop=self.loop,
        )


class Probe(Protocol):
    name: str
    default_ports: tuple[int, ...]

    async def run(self, ctx: ProbeContext, endpoint: Endpoint) -> Record: ...
