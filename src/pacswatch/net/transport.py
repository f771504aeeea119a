"""TCP and TLS connections with absolute deadlines and byte caps.

Deadlines are absolute loop times, not per-read timeouts: a peer that drips one byte a second
cannot stretch a phase (shared/docs reference section 7.2). Every read is capped by the bytes
left in the connection's budget, so a peer can never make us buffer more than `read_cap`.

The connection is a plain asyncio Protocol rather than StreamReader/StreamWriter: a probe
makes a dozen small reads and writes per endpoint, and the streams' extra buffer copy and a
timeout context manager around each read were a measurable share of a scan's CPU. Here a read
is one future and one timer handle.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from pacswatch.net.errors import NetError, map_os_error
from pacswatch.net.limits import RateLimiter
from pacswatch.status import Status

READ_CHUNK = 65536


class _Peer(asyncio.Protocol):
    """Collects what the peer sends and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.paused = False
        self.reading_paused = False
        self.drain_waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_CHUNK and self.transport is not None and not self.reading_paused:
            # Back-pressure: the reader takes at most READ_CHUNK at a time; stop the socket
            # instead of queueing what a flooding peer sends.
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class Connection:
    def __init__(self, peer: _Peer, read_cap: int) -> None:
        self._peer = peer
        self._loop = asyncio.get_running_loop()
        self.read_cap = read_cap
        self.bytes_read = 0

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._peer.transport
        assert transport is not None  # set by connection_made before the Connection exists
        return transport

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return self._transport.get_extra_info("ssl_object")

    async def _wait(self, waiter_attr: str, deadline: float) -> bool:
        """Wait for the protocol to wake us; False when the deadline came first."""
        future = self._loop.create_future()
        setattr(self._peer, waiter_attr, future)
        timer = self._loop.call_at(deadline, _expire, future)
        try:
            await future
        finally:
            timer.cancel()
            setattr(self._peer, waiter_attr, None)
        return self._loop.time() < deadline

    async def read(self, deadline: float) -> bytes:
        """Read what is available (b"" at end of stream) before the absolute `deadline`."""
        budget = self.read_cap - self.bytes_read
        if budget <= 0:
            raise NetError(Status.PROTOCOL_ERROR, f"peer sent more than the {self.read_cap}-byte cap")
        peer = self._peer
        while not peer.chunks and not peer.eof:
            if not await self._wait("waiter", deadline) and not peer.chunks and not peer.eof:
                raise NetError(Status.IO_TIMEOUT, "no answer before the deadline")
        if not peer.chunks:
            if peer.error is not None:
                raise map_os_error(peer.error, connecting=False)
            return b""
        data = peer.chunks[0] if len(peer.chunks) == 1 else b"".join(peer.chunks)
        limit = min(READ_CHUNK, budget)
        if len(data) > limit:
            peer.chunks = [data[limit:]]
            data = data[:limit]
        else:
            peer.chunks = []
        peer.buffered -= len(data)
        if peer.reading_paused and peer.buffered <= READ_CHUNK and not peer.eof:
            peer.reading_paused = False
            self._transport.resume_reading()
        self.bytes_read += len(data)
        return data

    async def write(self, data: bytes, deadline: float) -> None:
        transport = self._transport
        if transport.is_closing():
            raise map_os_error(self._peer.error or BrokenPipeError(), connecting=False)
        try:
            transport.write(data)
        except Exception as exc:
            raise map_os_error(exc, connecting=False) from None
        # Only a peer that stopped reading makes us wait (the transport paused us).
        while self._peer.paused and not transport.is_closing():
            if not await self._wait("drain_waiter", deadline):
                raise NetError(Status.IO_TIMEOUT, "peer stopped reading")

    def abort(self) -> None:
        """Close at once without waiting for the peer (RST when data is unsent)."""
        transport = self._peer.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        transport = self._peer.transport
        if transport is not None and not transport.is_closing():
            transport.close()


async def open_connection(
    ip: str,
    port: int,
    *,
    deadline: float,
    read_cap: int,
    limiter: RateLimiter | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Connection:
    """Connect (and, with `ssl_context`, complete the TLS handshake) before `deadline`."""
    if limiter is not None:
        await limiter.acquire()
    loop = asyncio.get_running_loop()
    peer = _Peer()
    try:
        async with asyncio.timeout_at(deadline):
            transport, _ = await loop.create_connection(lambda: peer, ip, port)
    except TimeoutError:
        raise NetError(Status.CONNECTION_TIMEOUT, "connect timed out") from None
    except Exception as exc:
        raise map_os_error(exc, connecting=True) from None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Small request/response exchanges: Nagle would add 40 ms per round trip.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    if ssl_context is not None:
        # The handshake comes after a completed TCP connect, so its failures are TLS facts,
        # not reachability ones.
        if peer.eof or transport.is_closing():
            transport.abort()
            raise NetError(Status.TLS_ERROR, "handshake failed: the peer closed the connection first")
        try:
            async with asyncio.timeout_at(deadline):
                transport = await loop.start_tls(transport, peer, ssl_context, server_hostname=server_hostname or None)
        except TimeoutError:
            transport.abort()
            raise NetError(Status.TLS_ERROR, "TLS handshake timed out") from None
        except Exception as exc:
            transport.abort()
            error = map_os_error(exc, connecting=False)
            if error.status is Status.PROTOCOL_ERROR:  # reset or close mid-handshake
                error = NetError(Status.TLS_ERROR, f"handshake failed: {error.detail}")
            raise error from None
        if transport is None or transport.get_extra_info("ssl_object") is None or transport.is_closing():
            # uvloop can hand back a transport whose handshake died with the connection.
            if transport is not None:
                transport.abort()
            raise NetError(Status.TLS_ERROR, "handshake failed: the peer closed the connection")
        peer.transport = transport
    return Connection(peer, read_cap)
