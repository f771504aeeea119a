"""Service detection on any port: a DICOM port that answers in HTTP is probed as a web port.

A DICOM probe meets a web server in two ways. Most HTTP servers answer the binary
A-ASSOCIATE-RQ at once with an error response ("HTTP/1.1 400 Bad Request"), which the DICOM
probe hears as its first bytes. Others wait for the end of a request head that never comes, or
drop the connection without a word: for those, after the DICOM probe gave up, one short GET on a
new connection (bounded by QUIET_CHECK seconds and the endpoint's deadline) says whether HTTP is
spoken there. Either way the web probe then runs on the port and its record replaces the DICOM
one, so `probe HOST:PORT` on a web port reports the web service, not an io-timeout.
"""

from __future__ import annotations

import ssl

from pacswatch.net.errors import NetError
from pacswatch.probes.base import Endpoint, ProbeContext

# Seconds for the GET after a silent DICOM exchange: a web server answers a request for / at once.
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
