"""TCP and TLS connections with absolute deadlines and byte caps.

Deadlines are absolute loop times, not per-read timeouts: a peer that drips one byte a second
cannot stretch a phase (docs/dicom-reference.md §7.2). Every read is capped by the bytes
left in the connection's budget, so a peer can never make us buffer more than `read_cap`.

The connection is a plain asyncio Protocol rather than StreamReader/StreamWriter: a probe
makes a dozen small reads and writes per endpoint, and the streams' extra buffer copy and a
timeout context manager around each read were a measurable share of a scan's CPU. Here a read
is one future and one timer handle.

`converse` goes one step further for protocols with many small exchanges (DICOM): the
protocol's bytes are pushed straight from `data_received` into a sans-IO conversation and its
answer written back in the same callback, with one timer for the whole conversation. The
conversation owns that timer's deadlines (aioquic's `get_timer()` / `handle_timer(now)`): the
driver asks it when to wake it and wakes it then, and holds no deadline of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, cast

from pacswatch.net.errors import LocalNetError, NetError, PeerNetError, map_os_error
from pacswatch.net.fdlimit import connect_when_free
from pacswatch.net.limits import ConnectGate, RateLimiter
from pacswatch.status import Status

READ_CHUNK = 65536
_T = TypeVar("_T")


class Conversation(Protocol):
    """What `Connection.converse` drives (see probes/dicom/session.py)."""

    done: bool

    def get_timer(self) -> float: ...  # absolute loop time at which handle_timer is due

    def handle_timer(self, now: float) -> bytes: ...  # the timer fired -> bytes to write

    def feed(self, data: bytes) -> bytes: ...  # the peer's bytes (b"" at EOF) -> bytes to write

    def fail(self, error: NetError) -> bytes: ...  # a timeout or a transport error -> bytes to write


# What a conversation is told, and whether that ends it. Each reaction returns the bytes the
# conversation answers and, when the event ends the conversation, the error it ends with.


def heard(conversation: Conversation, data: bytes) -> tuple[bytes, NetError | None]:
    return conversation.feed(data), None


def over_cap(conversation: Conversation, cap: int) -> tuple[bytes, NetError | None]:
    return conversation.fail(PeerNetError(Status.PROTOCOL_ERROR, f"peer sent more than the {cap}-byte cap")), None


def ended(conversation: Conversation, error: BaseException | None) -> tuple[bytes, NetError | None]:
    """The peer closed (`error` None) or the connection failed: nothing more can arrive, so a
    conversation still waiting afterwards is over."""
    out = conversation.feed(b"") if error is None else conversation.fail(map_os_error(error, connecting=False))
    return out, None if conversation.done else PeerNetError(Status.PROTOCOL_ERROR, "connection lost")


def timer_fired(conversation: Conversation, now: float) -> tuple[bytes, NetError | None]:
    """Its timer came due: the conversation handles it (a timeout where a deadline passed). One
    that keeps waiting with its timer still not later than now is ended with the timeout, never
    woken again and again."""
    out = conversation.handle_timer(now)
    stuck = not conversation.done and conversation.get_timer() <= now
    return out, PeerNetError(Status.IO_TIMEOUT, "no answer before the deadline") if stuck else None


class _Peer(asyncio.Protocol):
    """Collects what the peer sends and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.reading_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.driver: "_Driver | None" = None  # set while a conversation runs (push mode)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's transport

    def data_received(self, data: bytes) -> None:
        if self.driver is not None:
            self.driver.received(data)
            return
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
        if self.driver is not None:
            self.driver.received(b"")
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        if self.driver is not None:
            self.driver.lost(exc)
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


class _Driver:
    """Runs one conversation on a connection: bytes in from the protocol, bytes out to the
    transport, one timer set where the conversation asks, one future for the end."""

    def __init__(self, conn: "Connection", conversation: Conversation) -> None:
        self.conn = conn
        self.conversation = conversation
        self.loop = conn._loop
        self.future: asyncio.Future[None] = self.loop.create_future()
        # uvloop's call_at gives a plain Handle (no .when()) for a time already past, which a busy
        # loop meets: the time the timer was set for is kept here instead.
        self.timer: asyncio.Handle | None = None
        self.armed_for = 0.0

    def start(self, first: bytes) -> None:
        self._write(first)
        peer = self.conn._peer
        if peer.chunks:  # the peer spoke before we did
            data, peer.chunks, peer.buffered = b"".join(peer.chunks), [], 0
            if peer.reading_paused and not peer.eof:  # pull mode's back-pressure: push mode has none
                peer.reading_paused = False
                self.conn._transport.resume_reading()
            self.received(data)
        elif peer.eof:
            self.lost(peer.error)
        self._arm()

    def received(self, data: bytes) -> None:
        conn = self.conn
        conn.bytes_read += len(data)
        if conn.bytes_read > conn.read_cap:
            self._react(over_cap, conn.read_cap)
        elif len(data) <= READ_CHUNK:
            self._react(heard, data)
        else:
            # At most READ_CHUNK at a time, as a read would give: a flooding peer is judged on
            # its first PDU header before the rest of its bytes are buffered anywhere.
            for start in range(0, len(data), READ_CHUNK):
                if self.future.done():
                    break
                self._react(heard, data[start : start + READ_CHUNK])

    def lost(self, exc: BaseException | None) -> None:
        self._react(ended, exc)

    def _fired(self) -> None:
        self.timer = None
        self._react(timer_fired, self.loop.time())

    def _arm(self) -> None:
        if self.timer is None and not self.future.done():
            self.armed_for = self.conversation.get_timer()
            self.timer = self.loop.call_at(self.armed_for, self._fired)

    def _react(self, reaction: Callable[[Conversation, _T], tuple[bytes, NetError | None]], value: _T) -> None:
        """Tell the conversation what happened (a reaction above), write its answer, and end
        it or set the timer where it asks."""
        if self.future.done():
            return
        try:
            out, end = reaction(self.conversation, value)
        except Exception as exc:  # a bug in the conversation: end it, the caller reports it
            self._finish(exc)
            return
        self._write(out)
        if self.conversation.done:
            self._finish(None)
        elif end is not None:
            self._finish(end)
        elif self.timer is None:
            self._arm()
        elif self.conversation.get_timer() < self.armed_for:
            # A later time is caught when the timer fires (the conversation then has nothing to
            # do yet, and the timer is set again); an earlier one needs a new timer.
            self.timer.cancel()
            self.timer = None
            self._arm()

    def _write(self, data: bytes) -> None:
        transport = self.conn._peer.transport
        if data and transport is not None and not transport.is_closing():
            try:
                transport.write(data)
            except Exception:
                pass  # the peer is gone: its close or reset reaches the conversation next

    def _finish(self, exc: BaseException | None) -> None:
        self.conn._peer.driver = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.future.done():
            if exc is None:
                self.future.set_result(None)
            else:
                self.future.set_exception(exc)


class _CancelAt:
    """Cancels the running task at `deadline` unless stopped first: asyncio.timeout_at's job for
    the connect and the TLS handshake, with the same rule for telling its own cancellation from
    another one (Task.uncancel), but without its two lookups of the running loop and of the
    current task per use (each a getpid() system call on Python 3.11): a connect is the one
    await of a probe that needs a cancellation, and a scan makes one or two per endpoint."""

    __slots__ = ("_task", "_cancelling", "_handle", "_fired")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a connect deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()  # cancellations asked before ours are not ours
        self._fired = False
        self._handle = loop.call_at(deadline, self._fire)  # a past deadline fires at once

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def stop(self) -> bool:
        """Disarm; True when the deadline had fired and its cancellation is the only one asked
        (the CancelledError being handled is then a timeout, not a Ctrl-C)."""
        self._handle.cancel()
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Connection:
    def __init__(self, peer: _Peer, read_cap: int, loop: asyncio.AbstractEventLoop) -> None:
        self._peer = peer
        self._loop = loop
        self.read_cap = read_cap
        self.bytes_read = 0

    @property
    def _transport(self) -> asyncio.Transport:
        transport = self._peer.transport
        assert transport is not None  # set by connection_made before the Connection exists
        return transport

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        ssl_object: ssl.SSLObject | None = self._transport.get_extra_info("ssl_object")
        return ssl_object

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
            raise PeerNetError(Status.PROTOCOL_ERROR, f"peer sent more than the {self.read_cap}-byte cap")
        peer = self._peer
        while not peer.chunks and not peer.eof:
            if not await self._wait("waiter", deadline) and not peer.chunks and not peer.eof:
                raise PeerNetError(Status.IO_TIMEOUT, "no answer before the deadline")
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
                raise PeerNetError(Status.IO_TIMEOUT, "peer stopped reading")

    async def converse(self, conversation: Conversation, first: bytes) -> None:
        """Write `first`, then push every byte the peer sends into `conversation` and write what
        it answers, until it is done. Timeouts and transport failures are handed to it too."""
        driver = _Driver(self, conversation)
        self._peer.driver = driver
        driver.start(first)
        try:
            await driver.future
        finally:
            if self._peer.driver is driver:  # cancelled: leave the connection in pull mode
                driver._finish(None)

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
    connect_timeout: float | None = None,
    gate: ConnectGate | asyncio.Semaphore | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Connection:
    """Connect (and, with `ssl_context`, complete the TLS handshake) before `deadline`, and
    within `connect_timeout` seconds of the connect being issued. With `gate`, wait for one of
    its slots first and hold it until the connection is set up (or has failed). `loop` is the
    running loop, when the caller has it at hand (a probe's context does)."""
    # No lookup of the running loop when given: on Python 3.11 each one is a getpid() system
    # call, and a probe used to make half a dozen.
    if loop is None:
        loop = asyncio.get_running_loop()
    if gate is None:
        return await _open(loop, ip, port, deadline, read_cap, limiter, ssl_context, server_hostname, connect_timeout)
    # A connect's completion (or refusal) is seen by the event loop only when the loop next
    # polls; thousands of connects issued at once make one loop iteration so long that their
    # deadlines passed before the loop looked, and answering endpoints were reported as
    # connection timeouts (bench/README.md, internet_mix at 8,000 in flight). Fewer connects
    # at once, each timed from when it is issued, keeps their deadlines about the peer.
    async with gate:
        return await _open(loop, ip, port, deadline, read_cap, limiter, ssl_context, server_hostname, connect_timeout)


async def _open(
    loop: asyncio.AbstractEventLoop, ip: str, port: int, deadline: float, read_cap: int, limiter: RateLimiter | None,
    ssl_context: ssl.SSLContext | None, server_hostname: str | None, connect_timeout: float | None,
) -> Connection:
    if limiter is not None:
        await limiter.acquire(loop, ip)  # after the gate: the opt-out check stays right before the connect
    peer = _Peer()
    # The connect timeout counts from the attempt that gets a descriptor. A wait for one (none
    # free: net/fdlimit.py) is ours, not the target's, bounded by `deadline` alone, and should
    # that pass meanwhile the error says so instead of calling the target silent.
    def connect_limit() -> float:
        return min(deadline, loop.time() + connect_timeout) if connect_timeout is not None else deadline

    limit = connect_limit()
    expiry = _CancelAt(loop, limit)
    waiting = False

    def attempt() -> Awaitable[tuple[asyncio.Transport, _Peer]]:
        nonlocal expiry, waiting, limit
        if waiting:
            waiting = False
            expiry.stop()
            limit = connect_limit()
            expiry = _CancelAt(loop, limit)
        return loop.create_connection(lambda: peer, ip, port)

    def short() -> None:
        nonlocal expiry, waiting
        waiting = True
        expiry.stop()
        expiry = _CancelAt(loop, deadline)

    try:
        transport, _ = await connect_when_free(attempt, short)
    except asyncio.CancelledError:
        if expiry.stop():
            if waiting:
                raise LocalNetError(Status.ERROR, "endpoint deadline passed waiting for a free file descriptor") \
                    from None
            raise PeerNetError(Status.CONNECTION_TIMEOUT, "connect timed out") from None
        raise
    except Exception as exc:
        expiry.stop()
        raise map_os_error(exc, connecting=True) from None
    expiry.stop()
    # No TCP_NODELAY here: asyncio and uvloop both set it on every TCP transport they create
    # (Nagle would add 40 ms per round trip; tests/net checks it is on).
    if ssl_context is not None:
        # The handshake comes after a completed TCP connect, so its failures are TLS facts,
        # not reachability ones.
        if peer.eof or transport.is_closing():
            transport.abort()
            raise PeerNetError(Status.TLS_ERROR, "handshake failed: the peer closed the connection first")
        expiry = _CancelAt(loop, limit)  # within the connect timeout too, from the connect that worked
        try:
            # typed `Transport | None`; asyncio and uvloop return the new transport or raise
            transport = cast(asyncio.Transport, await loop.start_tls(
                transport, peer, ssl_context, server_hostname=server_hostname or None))
        except asyncio.CancelledError:
            if expiry.stop():
                transport.abort()
                raise PeerNetError(Status.TLS_ERROR, "TLS handshake timed out") from None
            raise
        except Exception as exc:
            expiry.stop()
            transport.abort()
            error = map_os_error(exc, connecting=False)
            if error.status is Status.PROTOCOL_ERROR:  # reset or close mid-handshake
                error = PeerNetError(Status.TLS_ERROR, f"handshake failed: {error.detail}")
            raise error from None
        expiry.stop()
        if transport is None or transport.get_extra_info("ssl_object") is None or transport.is_closing():
            # uvloop can hand back a transport whose handshake died with the connection.
            if transport is not None:
                transport.abort()
            raise PeerNetError(Status.TLS_ERROR, "handshake failed: the peer closed the connection")
        peer.transport = transport
    return Connection(peer, read_cap, loop)
