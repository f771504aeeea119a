"""Global limits: new connections per second (token bucket) and connections at once."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from pacswatch.net.errors import LocalNetError
from pacswatch.status import Status

# TCP connects (with their TLS handshakes) in flight at once in one scanning process, whatever
# --concurrency is: probes past it wait before their connect is issued, not after. Sized from
# bench/internet_mix.py (bench/README.md, "One I/O path"): at 4,000 connects issued at once
# every endpoint was right; at 8,000, answering endpoints and closed ports timed out.
CONNECTS_AT_ONCE = 1000


class ConnectGate:
    """At most `slots` holders at once, first come first served (`async with gate:`): the job of
    asyncio.Semaphore at O(1) a release. Python 3.11's Semaphore wakes a waiter by walking its
    queue past every waiter already woken but not yet resumed, so a burst of k releases in one
    loop iteration (k connects refused or completed together) costs O(k^2): at 3,000 probes in
    flight on 1,000 slots it made 450 Future.done() calls per connect, the largest single cost of
    a scan of closed ports (bench/README.md, "Speed, measured"). Here a release hands its slot
    to the first waiter still waiting, or frees it."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = self._running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved by a release, which handed its slot over to us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot came, but we are not taking it: pass it on
            raise  # a cancelled waiter left in the queue is skipped by the release that meets it

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up again only when the one kept is no longer running: most
        connects of a busy scan wait here, and on Python 3.11 every lookup is a getpid() system
        call (as in ProbeContext.loop)."""
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class RateLimiter:
    """A token bucket for new connections, shared by every probe of a scan.

    The bucket holds at most `burst` tokens so an idle period cannot turn into a flood.
    A rate of 0 or less means no limit (used only by tests and the lab).

    Every new connection of every probe takes a token here, so this is also where the last
    word on an address is asked: `refuse(ip)` (the scan's live opt-out list) runs after the
    token, right before the connect, and a reason raises a `blocked` LocalNetError. An address opted
    out while the scan runs is then never contacted again, not even by a probe already in
    flight (its TLS try or AE guess) or one that was waiting for its token.
    """

    def __init__(self, rate: float, burst: int | None = None,
                 refuse: Callable[[str], str | None] | None = None) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1, int(rate / 10) or 1))
        self.refuse = refuse
        self._tokens = self.burst
        self._last: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self, loop: asyncio.AbstractEventLoop | None = None, ip: str | None = None) -> None:
        await self._token(loop)
        if self.refuse is not None and ip is not None and (reason := self.refuse(ip)):
            raise LocalNetError(Status.BLOCKED, f"not contacted: {reason}")

    async def _token(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self.rate <= 0:
            return
        loop = loop or asyncio.get_running_loop()
        # Nobody waiting and a token in the bucket: take it without the lock (the usual case at
        # high rates). Waiters hold the lock while they sleep, so this never jumps the queue.
        if not self._lock.locked() and self._take(loop.time()):
            return
        async with self._lock:
            while not self._take(loop.time()):
                await asyncio.sleep((1 - self._tokens) / self.rate)

    def _take(self, now: float) -> bool:
        if self._last is None:
            self._last = now
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
