"""The transport edge: deadlines are absolute, reads are capped, OS errors become statuses."""

from __future__ import annotations

import asyncio

import pytest

from pacswatch.net.errors import NetError
from pacswatch.net.limits import RateLimiter
from pacswatch.net.transport import open_connection
from pacswatch.status import Status

HOST = "127.0.0.61"


async def _server(handler, host=HOST):
    server = await asyncio.start_server(handler, host, 0)
    return server, server.sockets[0].getsockname()[1]


def test_refused_maps_to_connection_refused():
    async def main():
        server, port = await _server(lambda r, w: None)
        server.close()
        await server.wait_closed()
        loop = asyncio.get_running_loop()
        with pytest.raises(NetError) as info:
            await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024)
        assert info.value.status is Status.CONNECTION_REFUSED

    asyncio.run(main())


def test_slow_drip_cannot_stretch_an_absolute_deadline():
    async def drip(reader, writer):
        try:
            for _ in range(100):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def main():
        server, port = await _server(drip)
        loop = asyncio.get_running_loop()
        start = loop.time()
        conn = await open_connection(HOST, port, deadline=start + 2, read_cap=1 << 20)
        deadline = start + 0.5
        got = b""
        with pytest.raises(NetError) as info:
            while True:
                got += await conn.read(deadline)
        elapsed = loop.time() - start
        conn.abort()
        server.close()
        assert info.value.status is Status.IO_TIMEOUT
        assert 0 < len(got) < 20  # it did drip, and we stopped at the deadline, not per byte
        assert elapsed < 1.0

    asyncio.run(main())


def test_read_cap_stops_a_flood():
    async def flood(reader, writer):
        try:
            while True:
                writer.write(b"\0" * 65536)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def main():
        server, port = await _server(flood)
        loop = asyncio.get_running_loop()
        conn = await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=200_000)
        total = 0
        with pytest.raises(NetError) as info:
            while True:
                total += len(await conn.read(loop.time() + 2))
        conn.abort()
        server.close()
        assert info.value.status is Status.PROTOCOL_ERROR
        assert total <= 200_000

    asyncio.run(main())


def test_silent_peer_times_out_as_io_timeout():
    async def silent(reader, writer):
        await asyncio.sleep(5)

    async def main():
        server, port = await _server(silent)
        loop = asyncio.get_running_loop()
        conn = await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024)
        with pytest.raises(NetError) as info:
            await conn.read(loop.time() + 0.2)
        conn.abort()
        server.close()
        assert info.value.status is Status.IO_TIMEOUT

    asyncio.run(main())


def test_tls_handshake_against_plain_server_is_a_tls_error():
    import ssl

    async def plain(reader, writer):
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main():
        server, port = await _server(plain)
        loop = asyncio.get_running_loop()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises(NetError) as info:
            await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024, ssl_context=ctx)
        server.close()
        assert info.value.status is Status.TLS_ERROR

    asyncio.run(main())


def test_rate_limiter_paces_new_connections():
    async def main():
        limiter = RateLimiter(50, burst=1)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(11):
            await limiter.acquire()
        return loop.time() - start

    elapsed = asyncio.run(main())
    # 11 tokens at 50/s with a burst of 1: the last one is due after 10 intervals of 20 ms.
    assert elapsed >= 0.19


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_tls_to_a_peer_that_closes_at_once_is_a_tls_error_on_either_loop(loop_kind):
    """uvloop can return from start_tls with a dead transport when the peer already closed: that
    must come out as tls-error, never as an AttributeError (a status `error`, our bug)."""
    import socket
    import threading

    from pacswatch.scan.eventloop import run_event_loop

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main():
        from pacswatch.net.tls import ScannerTlsContext

        ctx = ScannerTlsContext().context
        loop = asyncio.get_running_loop()
        statuses = []
        for _ in range(30):
            try:
                conn = await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024, ssl_context=ctx)
            except NetError as exc:
                statuses.append(exc.status)
            else:
                conn.abort()
                statuses.append("connected")
        return statuses

    try:
        statuses = run_event_loop(main(), loop_kind)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert set(statuses) <= {Status.TLS_ERROR}, statuses


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_both_event_loops_turn_nagle_off(kind):
    """open_connection relies on the event loop setting TCP_NODELAY (Nagle would add 40 ms to
    every request/response exchange of a probe)."""
    import socket

    from pacswatch.scan.eventloop import run_event_loop

    async def main():
        async def echo(reader, writer):
            writer.close()

        server, port = await _server(echo)
        loop = asyncio.get_running_loop()
        conn = await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024)
        sock = conn._peer.transport.get_extra_info("socket")
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        conn.abort()
        server.close()
        return type(loop).__module__, nodelay

    module, nodelay = run_event_loop(main(), kind)
    assert module.startswith(kind)
    assert nodelay != 0


class _FullListener:
    """A loopback listener whose accept queue is full and never drained: the kernel drops the
    next SYN, so a connect to it hangs until its deadline (as to a filtered port)."""

    def __enter__(self) -> int:
        import socket

        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(0)
        port = self.listener.getsockname()[1]
        self.held = []
        for _ in range(4):  # more than the queue holds: the extra ones hang too, unseen
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((HOST, port))
            self.held.append(sock)
        return port

    def __exit__(self, *exc_info) -> None:
        for sock in self.held:
            sock.close()
        self.listener.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_hanging_connect_times_out_and_leaves_the_task_uncancelled(loop_kind):
    """The connect's own deadline ends it as connection-timeout, and takes back the cancellation
    it used: the probe's task goes on as if nothing had been cancelled."""
    from pacswatch.scan.eventloop import run_event_loop

    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(NetError) as info:
            await open_connection(HOST, port, deadline=loop.time() + 5, read_cap=1024, connect_timeout=0.3)
        await asyncio.sleep(0)  # a cancellation left pending would be raised here
        return info.value.status, asyncio.current_task().cancelling()

    with _FullListener() as port:
        status, cancelling = run_event_loop(main(), loop_kind)
    assert status is Status.CONNECTION_TIMEOUT
    assert cancelling == 0


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_connect_cancelled_from_outside_is_a_cancellation_not_a_timeout(loop_kind):
    """Ctrl-C cancels the probes in flight: a connect under way must pass the CancelledError on,
    not turn it into a connection-timeout record."""
    from pacswatch.scan.eventloop import run_event_loop

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(open_connection(HOST, port, deadline=loop.time() + 5, read_cap=1024))
        await asyncio.sleep(0.2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        except NetError as exc:
            return exc.status
        return "connected"

    with _FullListener() as port:
        assert run_event_loop(main(), loop_kind) == "cancelled"


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_silent_tls_handshake_times_out_as_a_tls_error(loop_kind):
    from pacswatch.net.tls import ScannerTlsContext
    from pacswatch.scan.eventloop import run_event_loop

    async def main():
        async def silent(reader, writer):
            await asyncio.sleep(3)

        server, port = await _server(silent)
        loop = asyncio.get_running_loop()
        try:
            with pytest.raises(NetError) as info:
                await open_connection(HOST, port, deadline=loop.time() + 0.3, read_cap=1024,
                                      ssl_context=ScannerTlsContext().context)
        finally:
            server.close()
        return info.value.status, info.value.detail, asyncio.current_task().cancelling()

    status, detail, cancelling = run_event_loop(main(), loop_kind)
    assert status is Status.TLS_ERROR
    assert detail == "TLS handshake timed out"
    assert cancelling == 0


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_conversation_timer_set_for_a_time_already_past_can_be_moved_earlier(loop_kind):
    """A loop too busy to keep up sets a conversation's timer for a time already past: uvloop
    then gives a plain Handle (no .when()). Bytes that arrive before it runs, after which the
    conversation wants its timer earlier still, must re-arm it, not raise AttributeError (which
    broke that endpoint's connection under load)."""
    from pacswatch.net.transport import _Driver
    from pacswatch.scan.eventloop import run_event_loop

    class Conversation:
        def __init__(self, due: float) -> None:
            self.done, self.due, self.heard, self.fired_at = False, due, b"", None

        def get_timer(self) -> float:
            return self.due

        def handle_timer(self, now: float) -> bytes:
            self.done, self.fired_at = True, now
            return b""

        def feed(self, data: bytes) -> bytes:
            self.heard += data
            return b""

        def fail(self, error) -> bytes:
            self.done = True
            return b""

    async def main():
        async def hold(reader, writer):
            await reader.read()

        server, port = await _server(hold)
        loop = asyncio.get_running_loop()
        conn = await open_connection(HOST, port, deadline=loop.time() + 2, read_cap=1024)
        try:
            conversation = Conversation(loop.time() - 1)
            driver = _Driver(conn, conversation)
            conn._peer.driver = driver
            driver._arm()  # past already: uvloop's call_at returns a Handle
            conversation.due = loop.time() - 2
            driver.received(b"late")  # in the same loop iteration, before the timer ran
            await asyncio.wait_for(driver.future, 2)
            return conversation.heard, conversation.fired_at is not None
        finally:
            conn.abort()
            server.close()

    assert run_event_loop(main(), loop_kind) == (b"late", True)
