"""A connect's deadline is about the peer: it starts when the connect is issued, and a scan issues
only so many connects at once (net/transport.py, `gate`; net/limits.py, CONNECTS_AT_ONCE).

Before, the DICOM probe's connect deadline started before the probe waited for its rate-limiter
token, and nothing bounded the connects in flight: at 8,000 in flight, answering endpoints and
closed ports were reported as connection timeouts (bench/README.md, "One I/O path").
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time

from pacswatch.lab.fast import FastResponder
from pacswatch.net.errors import NetError
from pacswatch.net.limits import ConnectGate, RateLimiter
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.dicom.probe import DicomProbe
from pacswatch.status import Status
from pacswatch.scan.runner import probe_endpoint


def test_waiting_for_a_rate_token_is_not_counted_against_the_connect_timeout():
    # Two connections a second and a 0.4 s connect timeout: the third endpoint's connect is
    # issued about 1 s after its probe started. Each must still connect and be probed in full.
    timeouts = Timeouts.scaled(0.4)
    with FastResponder(["127.48.6.1", "127.48.6.2", "127.48.6.3"], ports=[0], workers=0) as responder:
        async def main():
            ctx = ProbeContext(ProbeOptions(timeouts=timeouts, ae_guess=()), RateLimiter(2, burst=1))
            started = time.monotonic()
            probe = DicomProbe()
            records = await asyncio.gather(*(probe_endpoint(probe, ctx, Endpoint(ip, port)) for ip, port in responder.endpoints))
            return records, time.monotonic() - started

        records, elapsed = asyncio.run(main())
    assert elapsed > 0.9 > timeouts.connect  # the limiter did hold the last connect back
    assert [(r.status, r.detail) for r in records] == [("success", None)] * 3


class SilentListener:
    """Accepts TCP on loopback and never says a word (a TLS handshake hangs); notes when each
    connection arrived."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.create_server((ip, 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[float] = []
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by stop()
                return
            self.accepted.append(time.monotonic())
            self._held.append(conn)

    def stop(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def test_connects_past_the_gate_wait_and_each_gets_its_whole_connect_timeout():
    # A gate of 2 and four TLS connects to a listener that never answers the ClientHello: a slot
    # is held through the handshake, so two connects arrive at once, the other two when the
    # first two time out, and each of the four is given the full timeout from its own connect.
    listener = SilentListener("127.48.6.9")
    timeout = 0.5
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    try:
        async def main():
            ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(timeout)), connecting=ConnectGate(2))
            deadline = asyncio.get_running_loop().time() + 30

            async def one():
                try:
                    await ctx.connect(Endpoint("127.48.6.9", listener.port), deadline, tls)
                except NetError as exc:
                    return exc.status, exc.detail
                return "connected", None

            started = time.monotonic()
            return started, await asyncio.gather(*(one() for _ in range(4)))

        started, outcomes = asyncio.run(main())
    finally:
        listener.stop()
    assert outcomes == [(Status.TLS_ERROR, "TLS handshake timed out")] * 4
    arrived = sorted(t - started for t in listener.accepted)
    assert len(arrived) == 4
    assert arrived[1] < timeout / 2, arrived  # the first two at once
    assert arrived[2] > timeout * 0.9, arrived  # the others only once a slot was free


def test_the_web_probes_wait_for_a_rate_token_is_not_counted_against_its_request():
    """The same for the web probe's requests (found by hand after the DICOM fix: at --rate 100
    closed web ports came back as io-timeout): four closed ports, four connections a second (a
    token every 0.25 s) and a 0.15 s request timeout, so three of the four wait longer for their
    token than a request may last. Each is still refused, not timed out. (The web endpoint's whole
    budget, six request timeouts, still includes such waits: at a very low --rate a web probe can
    stop early, saying "stopped at" in its detail.)"""
    from pacswatch.probes.http import HttpProbe

    closed = []
    for _ in range(4):  # ports nobody listens on: bound then closed
        with socket.socket() as sock:
            sock.bind(("127.48.6.22", 0))
            closed.append(sock.getsockname()[1])

    async def main():
        ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(0.15)), RateLimiter(4, burst=1))
        started = time.monotonic()
        records = await asyncio.gather(*(probe_endpoint(HttpProbe(), ctx, Endpoint("127.48.6.22", p)) for p in closed))
        return records, time.monotonic() - started

    records, elapsed = asyncio.run(main())
    shown = [(r.status, r.detail) for r in records]
    assert elapsed > 0.7, shown  # the limiter held the last connect back well past the request timeout
    assert [r.status for r in records] == ["connection-refused"] * 4, shown


def test_the_gate_is_first_come_first_served_bounded_and_survives_cancelled_waiters():
    async def main():
        gate, inside, order = ConnectGate(2), [], []
        release = asyncio.Event()

        async def holder(name: str) -> None:
            async with gate:
                inside.append(name)
                order.append(name)
                assert len(inside) <= 2
                await release.wait()
                inside.remove(name)

        tasks = [asyncio.create_task(holder(str(i))) for i in range(6)]
        await asyncio.sleep(0.01)
        assert order == ["0", "1"]  # two slots, the rest wait in order
        tasks[2].cancel()  # a waiter gives up: its turn goes to the next one
        await asyncio.sleep(0.01)
        release.set()  # a burst of releases in one loop iteration
        await asyncio.gather(*tasks, return_exceptions=True)
        return order, tasks[2].cancelled(), gate._free

    order, cancelled, free = asyncio.run(main())
    assert order == ["0", "1", "3", "4", "5"] and cancelled
    assert free == 2  # every slot came back


def test_a_slot_handed_to_a_waiter_cancelled_before_it_ran_is_passed_on():
    async def main():
        gate, got = ConnectGate(1), []

        async def take(name: str) -> None:
            async with gate:
                got.append(name)

        await gate.__aenter__()  # the one slot is held
        first, second = asyncio.create_task(take("first")), asyncio.create_task(take("second"))
        await asyncio.sleep(0)
        await gate.__aexit__(None, None, None)  # handed to `first`...
        first.cancel()  # ...which is cancelled before it resumes
        await asyncio.gather(first, second, return_exceptions=True)
        return got, gate._free

    got, free = asyncio.run(main())
    assert got == ["second"] and free == 1
