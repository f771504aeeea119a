"""Hostile and broken peers: raw asyncio servers doing what a malicious or broken server does.

All of a lab's hostile peers share one event loop in one thread, so each costs a listening
socket and a coroutine per connection. Every connection ends when the client closes, when
`hold` seconds have passed, or when the lab stops: none outlives the lab.

- `tarpit`              accepts TCP, never sends, never closes.
- `huge-length`         answers the A-ASSOCIATE-RQ with a type 0x02 header claiming 0xFFFFFFF0
                        bytes, then drips a random byte every `drip_interval`.
- `random-bytes`        answers with random bytes (never a valid PDU type first), then stays open.
- `slow-drip`           sends a valid A-ASSOCIATE-AC one byte per `drip_interval` (1 s).
- `abort-after-request` accepts (Verification and FIND contexts only), then answers the first
                        P-DATA-TF with A-ABORT (as Orthanc refuses a C-FIND).
- `http-not-dicom`      answers like an HTTP server: 400 Bad Request, then closes.
- `reset`               accepts, then resets (RST) as soon as the request arrives.

Not in the demo's lab, for the tests of what people see (TEXT_KINDS):

- `hostile-text`        a working acceptor (echo, find) whose implementation version name is
                        Rich markup and a terminal escape (HOSTILE_VERSION_NAME): what reaches a
                        terminal or a spreadsheet from it must be shown, never interpreted.

Not in the demo's lab either, for the probe's tests (OPT_IN_KINDS):

- `find-flood`          accepts (Verification and FIND), answers C-ECHO, then answers the first
                        C-FIND with pending responses forever, ignoring C-CANCEL: a query that is
                        open, hidden behind a peer that never finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import replace

from pacswatch.dicom.dimse import DATA_SET_PRESENT, Command, CommandField, encode_command, fragment_message
from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
from pacswatch.dicom.identifiers import study_query
from pacswatch.dicom.pdu import AAssociateAC, AAssociateRQ, PduFramer, encode_pdu
from pacswatch.lab.acceptor import LAB_MAX_PDU, Acceptor, accept_echo_and_find, associate_ac
from pacswatch.lab.loopthread import LoopThread, close_servers

HOSTILE_KINDS = (
    "tarpit", "huge-length", "random-bytes", "slow-drip", "abort-after-request", "http-not-dicom", "reset",
)
HUGE_HEADER = b"\x02\x00\xff\xff\xff\xf0"
HTTP_BODY = b"<html><head><title>400 Bad Request</title></head><body>Bad Request</body></html>\n"
HTTP_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\nServer: pacswatch-lab-http\r\nContent-Type: text/html\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + HTTP_BODY
)
REQUEST_TIMEOUT = 10.0
TEXT_KINDS = ("hostile-text",)
OPT_IN_KINDS = ("find-flood",)
# 13 bytes of ASCII (the item holds at most 16): a Rich closing tag, then an OSC "set the window
# title" sequence ended by BEL.
HOSTILE_VERSION_NAME = "[/]\x1b]0;pwned\x07"


async def read_request(reader: asyncio.StreamReader, timeout: float = REQUEST_TIMEOUT) -> bytes:
    """The client's first PDU (whole when it is framed like one), or what came before `timeout`."""
    data = b""
    with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError, OSError):
        async with asyncio.timeout(timeout):
            data = await reader.readexactly(6)
            length = int.from_bytes(data[2:6], "big")
            if 1 <= data[0] <= 7 and length <= 64 * 1024:
                data += await reader.readexactly(length)
            else:
                data += await reader.read(64 * 1024)
    return data


async def converse(acceptor: Acceptor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   until: Callable[[], bool], edit: Callable[[bytes], bytes] | None = None) -> bool:
    """Feed the client's bytes to `acceptor` and send its answers (through `edit`, for a peer that
    lies in them) until `until()` holds. False when the client hung up first."""
    while not until():
        data = await reader.read(65536)
        if not data:
            return False
        out, _ = acceptor.receive(data)
        if edit is not None:
            out = edit(out)
        if out:
            writer.write(out)
            await writer.drain()
    return True


async def drain_until_closed(reader: asyncio.StreamReader) -> None:
    """Read and drop everything until the client closes (or the connection breaks)."""
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass


async def drip(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, data: bytes | None, interval: float) -> None:
    """Send `data` one byte per `interval` (random bytes forever when None) until the client closes."""
    closed = asyncio.ensure_future(drain_until_closed(reader))
    try:
        position = 0
        while not closed.done() and not writer.is_closing():
            if data is None:
                chunk = os.urandom(1)
            elif position < len(data):
                chunk = data[position:position + 1]
                position += 1
            else:
                await closed
                return
            writer.write(chunk)
            await asyncio.wait([closed], timeout=interval)
    finally:
        closed.cancel()


class _FloodingAcceptor(Acceptor):
    """Answers C-ECHO as the lab's acceptor does; keeps the first C-FIND for the flood."""

    __slots__ = ("find",)

    def __init__(self) -> None:
        super().__init__(accept_echo_and_find)
        self.find: tuple[int, Command] | None = None

    def _respond(self, context_id: int, rq: Command) -> bytes:
        if rq.command_field == CommandField.C_FIND_RQ and self.find is None:
            self.find = (context_id, rq)  # answered by the flood, never finally
            return b""
        return super()._respond(context_id, rq)  # C-CANCEL: nothing, as the acceptor does


def pending_find_responses(context_id: int, rq: Command, count: int) -> bytes:
    """`count` pending C-FIND responses to `rq`, each with a made-up identifier (no patient)."""
    rsp = Command(CommandField.C_FIND_RSP, message_id_being_responded_to=rq.message_id,
                  affected_sop_class_uid=rq.affected_sop_class_uid, status=0xFF00,
                  data_set_type=DATA_SET_PRESENT)
    pdus = fragment_message(context_id, encode_command(rsp), study_query("2.25.1"), LAB_MAX_PDU)
    return b"".join(encode_pdu(p) for p in pdus) * count


class HostilePeers:
    """Runs hostile peers on (kind, ip, port) triples; port 0 picks a free port."""

    def __init__(self, endpoints: list[tuple[str, str, int]], *, hold: float = 900.0, drip_interval: float = 1.0) -> None:
        for kind, _, _ in endpoints:
            if kind not in HOSTILE_KINDS + TEXT_KINDS + OPT_IN_KINDS:
                raise ValueError(f"unknown hostile kind {kind!r}")
        self.endpoints = list(endpoints)
        self.hold = hold
        self.drip_interval = drip_interval
        self.ports: list[int] = []
        self._runner = LoopThread("pacswatch-lab-hostile")
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> list[int]:
        self.ports = self._runner.start(self._start, timeout)
        return self.ports

    async def _start(self) -> list[int]:
        ports = []
        for kind, ip, port in self.endpoints:
            handler = getattr(self, "_" + kind.replace("-", "_"))
            server = await asyncio.start_server(self._wrap(handler), ip, port, reuse_address=True, backlog=128)
            self._servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return ports

    def stop(self, timeout: float = 5.0) -> None:
        self._runner.stop(self._stop, timeout)

    async def _stop(self) -> None:
        await close_servers(self._servers, self._tasks, self._writers)

    def _wrap(self, handler):
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None  # asyncio runs each connection's handler as a task
            self._tasks.add(task)
            self._writers.add(writer)
            try:
                async with asyncio.timeout(self.hold):
                    await handler(reader, writer)
            except (TimeoutError, OSError, asyncio.CancelledError, PeerProtocolError, LocalProtocolError):
                pass
            finally:
                self._tasks.discard(task)
                self._writers.discard(writer)
                writer.transport.abort()
        return run

    # ------------------------------------------------------------------ the peers

    async def _tarpit(self, reader, writer) -> None:
        await drain_until_closed(reader)

    async def _huge_length(self, reader, writer) -> None:
        await read_request(reader)
        writer.write(HUGE_HEADER)
        await drip(writer, reader, None, self.drip_interval)

    async def _random_bytes(self, reader, writer) -> None:
        await read_request(reader)
        garbage = bytearray(os.urandom(512))
        garbage[0] = 0x80 | garbage[0]  # never a PDU type (0x01-0x07), TLS (0x15, 0x16) or text
        writer.write(bytes(garbage))
        await drain_until_closed(reader)

    async def _slow_drip(self, reader, writer) -> None:
        framer = PduFramer(1 << 16)
        pdus = framer.feed(await read_request(reader))
        if not pdus or not isinstance(pdus[0], AAssociateRQ):
            return
        await drip(writer, reader, encode_pdu(associate_ac(pdus[0])), self.drip_interval)

    async def _abort_after_request(self, reader, writer) -> None:
        acceptor = Acceptor(accept_echo_and_find, abort_on_data=True)
        if await converse(acceptor, reader, writer, lambda: acceptor.state == "done"):
            # After an A-ABORT (or a release), wait for the client to hang up, as PS3.8 asks.
            await drain_until_closed(reader)

    async def _http_not_dicom(self, reader, writer) -> None:
        await read_request(reader, timeout=5.0)
        writer.write(HTTP_RESPONSE)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await drain_until_closed(reader)

    async def _hostile_text(self, reader, writer) -> None:
        def hostile_name(out: bytes) -> bytes:
            if out[:1] != b"\x02":  # only the A-ASSOCIATE-AC carries the name, in its user info
                return out
            (ac,) = PduFramer(1 << 16).feed(out)
            assert isinstance(ac, AAssociateAC)  # its type byte, checked above
            return encode_pdu(replace(ac, user_info=replace(ac.user_info,
                                                            implementation_version_name=HOSTILE_VERSION_NAME)))

        acceptor = Acceptor()
        if await converse(acceptor, reader, writer, lambda: acceptor.state == "done", hostile_name) \
                and not acceptor.aborted:
            await drain_until_closed(reader)

    async def _find_flood(self, reader, writer) -> None:
        acceptor = _FloodingAcceptor()
        await converse(acceptor, reader, writer, lambda: acceptor.find is not None or acceptor.state == "done")
        if acceptor.find is None:  # the client hung up, released or was aborted before its C-FIND
            return
        # Pendings until the client goes away; what it sends (C-CANCEL, A-ABORT) is read and ignored.
        burst = pending_find_responses(*acceptor.find, 64)
        closed = asyncio.ensure_future(drain_until_closed(reader))
        try:
            while not closed.done() and not writer.is_closing():
                writer.write(burst)
                await writer.drain()
                await asyncio.sleep(0)
        finally:
            closed.cancel()

    async def _reset(self, reader, writer) -> None:
        # Wait for the client's first bytes: a reset racing the client's own connect would read
        # as "connection refused" on loopback; after the request it is a reset, deterministically.
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await reader.read(1)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
