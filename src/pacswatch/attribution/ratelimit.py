"""A minimum interval between requests to the same server (one limiter per RDAP server).

RDAP servers rate-limit by client address and answer 429 when pushed (RFC 9083 / RIR
policies: a few requests per second at most, some far less). Spacing our own requests per
server keeps a large attribution run from being shut out, while requests to different
registries still go in parallel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


class PerServerLimiter:
    def __init__(self, min_interval: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.waited: dict[str, float] = {}  # total seconds waited per server, for reports and tests

    def hold_off(self, server: str, seconds: float) -> None:
        """The server asked us to wait (Retry-After): no request to it before then."""
        self._next[server] = max(self._next.get(server, 0.0), self._clock() + seconds)

    @asynccontextmanager
    async def slot(self, server: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(server, asyncio.Lock())
        async with lock:  # one request at a time per server, spaced by min_interval
            delay = self._next.get(server, 0.0) - self._clock()
            if delay > 0:
                self.waited[server] = self.waited.get(server, 0.0) + delay
                await self._sleep(delay)
            try:
                yield
            finally:
                self._next[server] = max(self._next.get(server, 0.0), self._clock() + self.min_interval)
