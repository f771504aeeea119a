"""The opt-in random high port check (`--check-random-ports N`): does this address accept TCP on
ports nobody would run a service on? A host, a middlebox or a honeypot that completes the
handshake everywhere makes every port look open; its "DICOM service" proves nothing
(deception.py, signal random-ports-open).

Only the address just probed is touched: it passed the scope, the blocklist and the opt-outs for
that probe, and those are decided per address. Every connect goes through `ctx.connect`, so the
scan's rate limit, its live opt-out check (the limiter's `refuse`, asked before each connect) and
the connect gate hold; a connection that opens is aborted at once, with not a byte sent.
"""

from __future__ import annotations

import secrets

from pacswatch.net.errors import NetError
from pacswatch.probes.base import Endpoint, ProbeContext
from pacswatch.record import RandomPorts

MAX_PORTS = 16  # a handful per host, never a port scan


def pick_ports(count: int, port_range: tuple[int, int], avoid: int) -> list[int]:
    """`count` (at most MAX_PORTS) distinct ports of the range (without `avoid`), drawn at random, in order."""
    count = min(count, MAX_PORTS)
    lo, hi = port_range
    choices = [p for p in range(lo, hi + 1) if p != avoid] if hi - lo < 4096 else None
    if choices is not None:
        return sorted(secrets.SystemRandom().sample(choices, min(count, len(choices))))
    picked: set[int] = set()
    while len(picked) < count:
        port = lo + secrets.randbelow(hi - lo + 1)
        if port != avoid:
            picked.add(port)
    return sorted(picked)


async def check_random_ports(ctx: ProbeContext, endpoint: Endpoint) -> RandomPorts:
    opts = ctx.options
    ports = pick_ports(opts.random_ports, opts.random_port_range, endpoint.port)
    # One connect timeout each, one after the other: a handful of ports, never a port scan.
    deadline = ctx.loop.time() + opts.timeouts.connect * (len(ports) + 1)
    accepted = []
    for port in ports:
        try:
            conn = await ctx.connect(Endpoint(endpoint.ip, port), deadline)
        except NetError:
            continue
        conn.abort()
        accepted.append(port)
    return RandomPorts(tried=ports, open=accepted)
