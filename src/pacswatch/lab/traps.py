"""Traps for the lab: what a scanner must recognise as not a hospital's archive (deception.py).

- `honeypot`    the DICOM server of the `honeypots` package (qeeqbox/honeypots,
                honeypots/dicom_server.py), rebuilt from its source: the PyPI release (0.66)
                does not ship it yet. A pynetdicom AE titled PACS that accepts any called AE
                title, every storage class, the patient-information, query/retrieve and
                verification classes in every transfer syntax, and answers every request with
                one stub handler returning 0x0000. Echo and storage succeed; C-FIND fails
                (pynetdicom answers 0xC311, "exception in the handler", since the stub yields
                no matches), so the trap shows no data: it only records who asks.
- `accept-all`  a host that completes the TCP handshake on its port and on a block of other
                ports (ACCEPT_ALL_PORTS), waits for the first bytes, and closes without a word:
                a middlebox or honeypot sensor that makes every port look open.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets

from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    QueryRetrievePresentationContexts,
    RelevantPatientInformationPresentationContexts,
    VerificationPresentationContexts,
    evt,
)

from pacswatch.lab.data import make_archive
from pacswatch.lab.loopthread import LoopThread, close_servers
from pacswatch.lab.pacs import PacsServer, QuietFilter

TRAP_KINDS = ("honeypot", "accept-all")
HONEYPOT_AE_TITLE = "PACS"  # the honeypot's own (dicom_server.py)
# The accept-all host's extra ports on the command line's lab (a scan's --random-port-range).
ACCEPT_ALL_PORTS = (61000, 61063)
_FIRST_BYTES_WAIT = 2.0


def _stub(event, *_) -> int:
    """The honeypot's one handler for every request: success, whatever was asked."""
    return 0x0000


class HoneypotServer(PacsServer):
    def __init__(self, ip: str, port: int, *, quiet: QuietFilter | None = None) -> None:
        super().__init__("honeypot", ip, port, archive=make_archive(0, 0), quiet=quiet)

    def build(self) -> tuple[AE, list[evt.EventHandlerType]]:
        ae = AE(ae_title=HONEYPOT_AE_TITLE)
        ae.maximum_associations = 64
        for contexts in (AllStoragePresentationContexts, RelevantPatientInformationPresentationContexts,
                         QueryRetrievePresentationContexts, VerificationPresentationContexts):
            for context in contexts:
                assert context.abstract_syntax is not None  # pynetdicom's own lists name every class
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES, scu_role=False,
                                         scp_role=True)
        events = (evt.EVT_C_ECHO, evt.EVT_C_FIND, evt.EVT_C_GET, evt.EVT_C_MOVE, evt.EVT_C_STORE)
        return ae, [(event, _stub) for event in events]


class AcceptAll:
    """Listens on (ip, port) and on `block` (LO, HI) of the same address; port 0 and block None
    pick a free port and a free block of 64."""

    def __init__(self, ip: str, port: int, block: tuple[int, int] | None = ACCEPT_ALL_PORTS) -> None:
        self.ip, self.port, self.block = ip, port, block
        self._runner = LoopThread("pacswatch-lab-accept-all")
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()

    def start(self, timeout: float = 20.0) -> int:
        self.port, self.block = self._runner.start(self._start, timeout)
        return self.port

    async def _start(self) -> tuple[int, tuple[int, int]]:
        main = await self._listen(self.port)
        port = main.sockets[0].getsockname()[1]
        if self.block is not None:
            await self._listen_block(self.block)
            return port, self.block
        for _ in range(20):  # a free block of 64 for a lab on free ports (tests run several)
            first = 20000 + secrets.randbelow(39000)
            try:
                await self._listen_block((first, first + 63), avoid=port)
                return port, (first, first + 63)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                for server in self._servers[1:]:
                    server.close()
                del self._servers[1:]
        raise OSError(errno.EADDRINUSE, f"no free block of 64 ports on {self.ip}")

    async def _listen_block(self, block: tuple[int, int], avoid: int = 0) -> None:
        for p in range(block[0], block[1] + 1):
            if p != avoid:
                await self._listen(p)

    async def _listen(self, port: int) -> asyncio.Server:
        server = await asyncio.start_server(self._handle, self.ip, port, reuse_address=True, backlog=32)
        self._servers.append(server)
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection's handler as a task
        self._tasks.add(task)
        try:
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(_FIRST_BYTES_WAIT):
                    await reader.read(65536)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()  # never a byte back

    def stop(self, timeout: float = 5.0) -> None:
        self._runner.stop(self._stop, timeout)

    async def _stop(self) -> None:
        await close_servers(self._servers, self._tasks)
