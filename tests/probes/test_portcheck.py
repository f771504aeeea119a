"""The opt-in random high port check (probes/portcheck.py): which ports it picks, that every
connect waits for the scan's rate limit, and what it records, against real listeners on loopback."""

from __future__ import annotations

import asyncio
import socket
import time

from pacswatch.net.limits import RateLimiter
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.portcheck import MAX_PORTS, check_random_ports, pick_ports

IP = "127.64.9.1"


def test_picks_distinct_ports_in_the_range_never_the_probed_one():
    for _ in range(50):
        ports = pick_ports(4, (40000, 40005), avoid=40002)
        assert len(ports) == len(set(ports)) == 4 and ports == sorted(ports)
        assert all(40000 <= p <= 40005 and p != 40002 for p in ports)
    assert len(pick_ports(100, (49152, 65535), avoid=104)) == MAX_PORTS  # a handful, never a port scan
    assert pick_ports(9, (50000, 50001), avoid=50000) == [50001]  # no more than the range holds


def test_records_which_ports_accept_and_waits_for_the_rate_limit():
    listeners = []
    for _ in range(2):
        s = socket.socket()
        s.bind((IP, 0))
        s.listen(8)
        listeners.append(s)
    first, second = sorted(s.getsockname()[1] for s in listeners)
    try:
        async def run():
            # Two listening ports and, around them, ports nobody listens on (refused at once).
            options = ProbeOptions(timeouts=Timeouts.scaled(1.0), random_ports=4,
                                   random_port_range=(min(first, second), min(first, second) + 3))
            ctx = ProbeContext(options, limiter=RateLimiter(5.0, burst=1))
            started = time.monotonic()
            result = await check_random_ports(ctx, Endpoint(IP, 9))
            return result, time.monotonic() - started

        result, elapsed = asyncio.run(run())
    finally:
        for s in listeners:
            s.close()
    assert len(result.tried) == 4
    assert set(result.open) == {p for p in (first, second) if p in result.tried}
    assert first in result.tried and first in result.open
    assert elapsed >= 3 / 5.0 - 0.05  # four connects at five a second: the limiter paced them


def test_an_address_opted_out_during_the_scan_is_not_contacted():
    listener = socket.socket()
    listener.bind((IP, 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        async def run():
            options = ProbeOptions(timeouts=Timeouts.scaled(1.0), random_ports=1, random_port_range=(port, port))
            # The scan's live opt-out list answers in the limiter, before every connect.
            ctx = ProbeContext(options, limiter=RateLimiter(0, refuse=lambda ip: "opted out"))
            return await check_random_ports(ctx, Endpoint(IP, 9))

        result = asyncio.run(run())
        try:
            listener.accept()
            contacted = True
        except BlockingIOError:
            contacted = False
    finally:
        listener.close()
    assert result.tried == [port] and result.open == []
    assert not contacted
