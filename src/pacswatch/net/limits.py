"""Global limits: new connections per second (token bucket) and connections at once."""

from __future__ import annotations

import asyncio


class RateLimiter:
    """A token bucket for new connections, shared by every probe of a scan.

    The bucket holds at most `burst` tokens so an idle period cannot turn into a flood.
    A rate of 0 or less means no limit (used only by tests and the lab).
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1, int(rate / 10) or 1))
        self._tokens = self.burst
        self._last: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                if self._last is None:
                    self._last = now
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)
