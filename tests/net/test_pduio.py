"""The PDU engine (net/_pduio.c through net/pduio.py) against real loopback sockets: framing,
raw hand-over, deadlines, caps, errors, writes the kernel takes in parts, and the audit event."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
import threading
import time

import pytest

from pacswatch.net import pduio

HOST = "127.46.7.1"


def test_the_engine_is_built_here():
    assert pduio._pduio is not None, "pip install -e . should have built pacswatch.net._pduio"
    assert pduio.available()


class Peer:
    """A one-connection TCP peer on loopback, scripted by a function of the accepted socket."""

    def __init__(self, script) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script) -> None:
        conn, _ = self.listener.accept()
        with conn:
            script(conn, self)
        self.listener.close()

    def read_all(self, conn) -> None:
        while chunk := conn.recv(65536):
            self.received += chunk


def run_link(port: int, *, until, wait: float = 3.0, read_cap: int = 1 << 20, deadline: float = 5.0,
             on_connected=None) -> list:
    """Connect with a PduLink, collect (kind, value) events until `until(events)`; returns them."""
    events: list = []

    async def main():
        loop = asyncio.get_running_loop()
        link = pduio.PduLink(loop)
        done = loop.create_future()
        tag = None

        def handler(kind, value):
            events.append((kind, value))
            if kind == pduio.CONNECTED and on_connected is not None:
                on_connected(link, tag, loop)
            if until(events) and not done.done():
                done.set_result(None)

        tag = link.connect(HOST, port, loop.time() + deadline, read_cap, handler)
        try:
            await asyncio.wait_for(done, wait)
        finally:
            link.shutdown()

    asyncio.run(main())
    return events


def pdu(kind: int, body: bytes) -> bytes:
    return bytes([kind, 0]) + len(body).to_bytes(4, "big") + body


def kinds(events) -> list:
    return [k for k, _ in events]


def test_pdus_are_cut_at_their_boundaries_however_they_arrive():
    a, b, c = pdu(2, b"A" * 300), pdu(4, b"\x00\x00\x00\x02\x01\x03"), pdu(6, b"\x00" * 4)

    def script(conn, peer):
        conn.sendall(a + b)  # two in one write
        for i in range(len(c)):  # one byte by byte
            conn.sendall(c[i : i + 1])
            time.sleep(0.002)
        conn.recv(1)

    peer = Peer(script)
    events = run_link(peer.port, until=lambda ev: len(ev) == 4)
    assert events == [(pduio.CONNECTED, None), (pduio.PDU, a), (pduio.PDU, b), (pduio.PDU, c)]


def test_bytes_that_are_not_a_pdu_are_handed_over_raw_then_the_end():
    reply = b"HTTP/1.1 400 Bad Request\r\n\r\n"

    def script(conn, peer):
        conn.sendall(reply)

    peer = Peer(script)
    events = run_link(peer.port, until=lambda ev: ev[-1][0] == pduio.EOF)
    assert kinds(events)[0] == pduio.CONNECTED and kinds(events)[-1] == pduio.EOF
    assert b"".join(v for k, v in events if k == pduio.DATA) == reply
    assert pduio.PDU not in kinds(events)


def test_a_four_gigabyte_length_claim_is_handed_over_at_once_not_buffered():
    header = b"\x02\x00\xff\xff\xff\xff"

    def script(conn, peer):
        conn.sendall(header + b"x" * 10)
        time.sleep(2)  # keeps the connection open: the bytes must come before any end

    peer = Peer(script)
    started = time.monotonic()
    events = run_link(peer.port, until=lambda ev: sum(len(v) for k, v in ev if k == pduio.DATA) >= 16)
    assert time.monotonic() - started < 1.5
    assert b"".join(v for k, v in events if k == pduio.DATA) == header + b"x" * 10


def test_a_partial_pdu_is_handed_over_before_the_close():
    def script(conn, peer):
        conn.sendall(pdu(2, b"B" * 50)[:20])

    peer = Peer(script)
    events = run_link(peer.port, until=lambda ev: ev[-1][0] == pduio.EOF)
    assert events[1:] == [(pduio.DATA, pdu(2, b"B" * 50)[:20]), (pduio.EOF, None)]


def test_the_deadline_given_with_a_send_ends_the_wait():
    def script(conn, peer):
        conn.sendall(b"\x02\x00")  # two bytes of a header, then silence
        time.sleep(3)

    sent_at = []

    def on_connected(link, tag, loop):
        sent_at.append(time.monotonic())
        link.send(tag, b"hello", loop.time() + 0.3)

    peer = Peer(script)
    events = run_link(peer.port, until=lambda ev: ev[-1][0] == pduio.TIMEOUT, on_connected=on_connected)
    waited = time.monotonic() - sent_at[0]
    assert events[1:] == [(pduio.DATA, b"\x02\x00"), (pduio.TIMEOUT, None)]
    assert 0.25 <= waited < 1.0, waited


def test_more_than_the_byte_cap_ends_the_reading():
    def script(conn, peer):
        try:
            conn.sendall(pdu(4, b"\x00" * 5000) * 3)
            time.sleep(1)
        except OSError:
            pass

    peer = Peer(script)
    events = run_link(peer.port, until=lambda ev: ev[-1][0] == pduio.CAP, read_cap=8000)
    assert events[-1] == (pduio.CAP, 8000)
    assert sum(len(v) for k, v in events if k in (pduio.PDU, pduio.DATA)) <= 8000


def test_a_refused_connect_is_an_error_with_its_errno():
    with socket.create_server((HOST, 0)) as probe_port:
        port = probe_port.getsockname()[1]
    events = run_link(port, until=lambda ev: True)
    assert events == [(pduio.ERROR, errno.ECONNREFUSED)]


def test_what_the_kernel_does_not_take_at_once_is_written_later_and_before_the_close():
    payload = bytes(range(256)) * 40000  # 10 MB: far more than the socket buffers

    def script(conn, peer):
        time.sleep(0.3)  # let the engine's own buffer fill first
        peer.read_all(conn)

    peer = Peer(script)

    async def main():
        loop = asyncio.get_running_loop()
        link = pduio.PduLink(loop)

        def handler(kind, value):
            if kind == pduio.CONNECTED:
                link.send(tag, payload, loop.time() + 10)
                link.close(tag)  # graceful: the rest must still leave, then the close

        tag = link.connect(HOST, peer.port, loop.time() + 5, 1 << 20, handler)
        while peer.thread.is_alive():  # the peer reads until our close
            await asyncio.sleep(0.05)
        link.shutdown()

    asyncio.run(asyncio.wait_for(main(), 20))
    assert bytes(peer.received) == payload


def test_no_event_after_close_and_tags_wait_one_poll_before_reuse():
    async def main():
        engine = pduio._pduio.Engine()
        with socket.create_server((HOST, 0)) as listener:
            port = listener.getsockname()[1]
            first = engine.connect(HOST, port, time.monotonic() + 5, 1000)
            engine.abort(first)
            second = engine.connect(HOST, port, time.monotonic() + 5, 1000)
            assert second != first  # not before the next poll
            await asyncio.sleep(0.05)
            events = engine.poll()
            assert [t for t, _, _ in events] == [second]
            third = engine.connect(HOST, port, time.monotonic() + 5, 1000)
            assert third == first  # now it may
            engine.shutdown()
            assert engine.active == 0

    asyncio.run(main())


def test_connects_raise_the_socket_connect_audit_event():
    # In a child: an audit hook cannot be removed once added.
    code = (
        "import sys\n"
        "seen = []\n"
        "def hook(event, args):\n"
        "    if event == 'socket.connect':\n"
        "        seen.append(args[1]); raise PermissionError('refused by the hook')\n"
        "sys.addaudithook(hook)\n"
        "from pacswatch.net import _pduio\n"
        "e = _pduio.Engine()\n"
        "try:\n"
        f"    e.connect('{HOST}', 9, 0.0, 100)\n"
        "except PermissionError:\n"
        "    print(seen, e.active)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == f"[('{HOST}', 9)] 0", out.stderr


def test_ipv6_loopback_and_a_non_address():
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        port = listener.getsockname()[1]
        answer = pdu(2, b"v6")

        def serve():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(answer)
                conn.recv(1)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        events = []

        async def main():
            loop = asyncio.get_running_loop()
            link = pduio.PduLink(loop)
            done = loop.create_future()

            def handler(kind, value):
                events.append((kind, value))
                if kind == pduio.PDU:
                    done.set_result(None)

            link.connect("::1", port, loop.time() + 5, 1000, handler)
            with pytest.raises(ValueError, match="not an IP address"):
                link.connect("localhost", port, loop.time() + 5, 1000, handler)  # names are resolved before
            await asyncio.wait_for(done, 5)
            link.shutdown()

        asyncio.run(main())
        thread.join(5)
    assert events == [(pduio.CONNECTED, None), (pduio.PDU, answer)]


# ------------------------------------------------------------------ framing, fuzzed

FRAME_MAX = 65536  # the longest PDU body the engine frames (_pduio.c frame_max); longer is raw


def reference_framing(stream: bytes) -> tuple[list[bytes], bytes]:
    """What the engine must hand over for `stream`, however it arrives: the whole PDUs from the
    start, then everything else as DATA (a header with a type outside 1-7 or a body longer than
    FRAME_MAX gives up framing for good; an incomplete PDU at the end is handed over raw)."""
    pdus, at = [], 0
    while len(stream) - at >= 6:
        kind, length = stream[at], int.from_bytes(stream[at + 2 : at + 6], "big")
        if not 1 <= kind <= 7 or length > FRAME_MAX or len(stream) - at - 6 < length:
            break
        pdus.append(stream[at : at + 6 + length])
        at += 6 + length
    return pdus, stream[at:]


def random_stream(rng) -> bytes:
    """PDUs of every type and of lengths up to and past the frame cap, now and then a header
    that breaks framing (a bad type, a huge length) or a cut at the end."""
    parts = []
    for _ in range(rng.randint(0, 12)):
        roll = rng.random()
        if roll < 0.88:
            length = rng.choice([0, 1, 4, rng.randint(0, 300), rng.randint(0, 20_000), FRAME_MAX])
            parts.append(bytes([rng.randint(1, 7), rng.randint(0, 255)]) + length.to_bytes(4, "big")
                         + rng.randbytes(length))
        elif roll < 0.92:
            kind = rng.choice([0, 8, 0x16, 0x48, 0xFF])  # 0x16: a TLS record; 0x48: "HTTP"
            parts.append(bytes([kind]) + rng.randbytes(rng.randint(0, 200)))
        elif roll < 0.97:
            length = rng.choice([FRAME_MAX + 1, 1 << 24, 0xFFFFFFFF])
            parts.append(bytes([rng.randint(1, 7), 0]) + length.to_bytes(4, "big") + rng.randbytes(rng.randint(0, 300)))
        else:
            parts.append(rng.randbytes(rng.randint(1, 5)))
    stream = b"".join(parts)
    if stream and rng.random() < 0.3:
        stream = stream[: rng.randint(0, len(stream))]  # cut anywhere, a header too
    return stream


def test_framing_matches_the_reference_for_random_streams_in_random_pieces():
    import random

    rng = random.Random(20261127)
    streams = [random_stream(rng) for _ in range(40)]
    # Each stream goes out in random pieces (1 byte to 9 KB, some with a pause, so the engine
    # sees cuts inside headers and bodies), then the peer closes.
    pieces = []
    for stream in streams:
        cuts, at = [], 0
        while at < len(stream):
            size = rng.choice([1, 2, 5, 6, 7, rng.randint(1, 9000)])
            cuts.append((stream[at : at + size], rng.random() < 0.3))
            at += size
        pieces.append(cuts)
    events: dict[int, list] = {n: [] for n in range(len(streams))}

    async def main():
        loop = asyncio.get_running_loop()
        order: list[int] = []

        async def serve(reader, writer):
            n = order.pop(0)  # connections are accepted in the order they are made, one by one
            writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece, pause in pieces[n]:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(0.002)
            writer.close()

        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        link = pduio.PduLink(loop)
        finished = loop.create_future()
        open_ = set(range(len(streams)))
        tags: dict[int, int] = {}
        try:
            for n in range(len(streams)):
                connected = loop.create_future()
                order.append(n)

                def handler(kind, value, n=n, connected=connected):
                    events[n].append((kind, value))
                    if kind == pduio.CONNECTED:
                        link.send(tags[n], b"", loop.time() + 20)  # read until then
                        connected.set_result(None)
                    if kind in (pduio.EOF, pduio.ERROR, pduio.TIMEOUT, pduio.CAP):
                        open_.discard(n)
                        if not open_ and not finished.done():
                            finished.set_result(None)

                tags[n] = link.connect(HOST, port, loop.time() + 20, 1 << 20, handler)
                await asyncio.wait_for(connected, 5)
                await asyncio.sleep(0.01)  # accepted before the next connect: `order` stays true
            await asyncio.wait_for(finished, 30)
        finally:
            link.shutdown()
            server.close()

    asyncio.run(main())
    raw_seen = 0
    for n, stream in enumerate(streams):
        got = events[n]
        assert got[0] == (pduio.CONNECTED, None) and got[-1] == (pduio.EOF, None), (n, kinds(got))
        pdus, rest = reference_framing(stream)
        assert [v for k, v in got if k == pduio.PDU] == pdus, n
        assert b"".join(v for k, v in got if k == pduio.DATA) == rest, n
        # Every whole PDU comes before any raw byte: framing, once given up, stays given up.
        middle = kinds(got)[1:-1]
        assert middle == sorted(middle, key=lambda k: k == pduio.DATA), (n, middle)
        raw_seen += bool(rest)
    assert 5 <= raw_seen < len(streams)  # the random streams did exercise both paths
