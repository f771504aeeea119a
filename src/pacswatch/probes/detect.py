"""Service detection on any port: a DICOM port that answers in HTTP is probed as a web port.

A DICOM probe meets a web server in two ways. Most HTTP servers answer the binary
A-ASSOCIATE-RQ at once with an error response ("HTTP/1.1 400 Bad Request"), which the DICOM
probe hears as its first bytes. Others wait for the end of a request head that never comes, or
drop the connection without a word: for those one short GET on a new connection (bounded by
QUIET_CHECK seconds and the endpoint's deadline) says whether HTTP is spoken there. When the
association is still waiting for its first byte QUIET_CHECK seconds before its timeout, the GET
starts then (QuietCheck), so that both end together: a silent endpoint costs one wait, not the
association's wait and then the GET's. Either way the web probe then runs on the port and its record replaces the DICOM
one, so `probe HOST:PORT` on a web port reports the web service, not an io-timeout.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Callable

from pacswatch.net.errors import NetError
from pacswatch.probes.base import Endpoint, ProbeContext

# Seconds for the GET on a silent DICOM port: a web server answers a request for / at once.
QUIET_CHECK = 2.0
_HTTP_RESPONSE = b"HTTP/"


def speaks_http(first_bytes: bytes) -> bool:
    """Whether a peer's first bytes are an HTTP response (its status line)."""
    return first_bytes.startswith(_HTTP_RESPONSE)


def request_head(endpoint: Endpoint, user_agent: str) -> bytes:
    """The one request of the check: GET / with our honest User-Agent, then close."""
    return (f"GET / HTTP/1.1\r\nHost: {endpoint}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n"
            "Connection: close\r\n\r\n").encode("ascii", "replace")


async def answers_http(ctx: ProbeContext, endpoint: Endpoint, deadline: float,
                       ssl_context: ssl.SSLContext | None = None) -> bool:
    """One GET / on a new connection (inside TLS with `ssl_context`): does the peer answer with
    an HTTP status line before `deadline` (or QUIET_CHECK seconds, whichever comes first)?"""
    deadline = min(deadline, ctx.loop.time() + min(QUIET_CHECK, ctx.options.timeouts.http))
    if ctx.loop.time() >= deadline:
        return False
    try:
        conn = await ctx.connect(endpoint, deadline, ssl_context)
    except NetError:
        return False
    try:
        await conn.write(request_head(endpoint, ctx.options.identity.user_agent), deadline)
        heard = b""
        while len(heard) < len(_HTTP_RESPONSE):
            data = await conn.read(deadline)
            if not data:
                break
            heard += data
        return speaks_http(heard)
    except NetError:
        return False
    finally:
        conn.abort()


class QuietCheck:
    """answers_http, started while a DICOM association still waits for the peer's first byte,
    `after` seconds from now (its wait's end less the GET's budget), so that the GET is done when
    the association times out. Nothing starts if the peer said something (`heard()`) by then: a
    DICOM server slower than that still gets the GET, on a connection of its own, which it drops."""

    def __init__(self, ctx: ProbeContext, endpoint: Endpoint, deadline: float, ssl_context: ssl.SSLContext | None,
                 after: float, heard: Callable[[], bool]) -> None:
        self._task: asyncio.Task[bool] | None = None
        self._timer: asyncio.TimerHandle | None = ctx.loop.call_later(
            after, self._start, ctx, endpoint, deadline, ssl_context, heard)

    def _start(self, ctx: ProbeContext, endpoint: Endpoint, deadline: float, ssl_context: ssl.SSLContext | None,
               heard: Callable[[], bool]) -> None:
        self._timer = None
        if not heard():
            self._task = ctx.loop.create_task(answers_http(ctx, endpoint, deadline, ssl_context))

    async def result(self) -> bool | None:
        """Whether the peer answered the GET; None when the check had not started."""
        if self._task is None:
            self.cancel()
            return None
        return await self._task

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()  # answers_http aborts its connection on the way out


def quiet_check_after(association: float, http: float) -> float:
    """Seconds into an association's wait at which the GET starts: its budget before the end."""
    return max(0.0, association - min(QUIET_CHECK, http))
