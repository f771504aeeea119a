"""TCP and TLS connections with absolute deadlines and byte caps.

Deadlines are absolute loop times, not per-read timeouts: a peer that drips one byte a second
cannot stretch a phase (shared/docs reference section 7.2). Every read is capped by the bytes
left in the connection's budget, so a peer can never make us buffer more than `read_cap`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

from pacswatch.net.errors import NetError, map_os_error
from pacswatch.net.limits import RateLimiter
from pacswatch.status import Status

READ_CHUNK = 65536


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, read_cap: int) -> None:
        self._reader = reader
        self._writer = writer
        self.read_cap = read_cap
        self.bytes_read = 0

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return self._writer.get_extra_info("ssl_object")

    async def read(self, deadline: float) -> bytes:
        """Read what is available (b"" at end of stream) before the absolute `deadline`."""
        budget = self.read_cap - self.bytes_read
        if budget <= 0:
            raise NetError(Status.PROTOCOL_ERROR, f"peer sent more than the {self.read_cap}-byte cap")
        try:
            async with asyncio.timeout_at(deadline):
                data = await self._reader.read(min(READ_CHUNK, budget))
        except TimeoutError:
            raise NetError(Status.IO_TIMEOUT, "no answer before the deadline") from None
        except Exception as exc:  # OS and ssl errors become statuses here, nowhere else
            raise map_os_error(exc, connecting=False) from None
        self.bytes_read += len(data)
        return data

    async def write(self, data: bytes, deadline: float) -> None:
        try:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() == 0:
                # The kernel took every byte (the usual case for a few hundred bytes): no drain
                # to wait for, so no timer to arm. Profiling put this timer at ~8% of a scan.
                return
            async with asyncio.timeout_at(deadline):
                await self._writer.drain()
        except TimeoutError:
            raise NetError(Status.IO_TIMEOUT, "peer stopped reading") from None
        except Exception as exc:
            raise map_os_error(exc, connecting=False) from None

    def abort(self) -> None:
        """Close at once without waiting for the peer (RST when data is unsent)."""
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()

    async def close(self) -> None:
        if self._writer.transport.is_closing():
            return
        self._writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
        except Exception:  # nothing to learn from a failing close; the socket is gone either way
            self.abort()


async def open_connection(
    ip: str,
    port: int,
    *,
    deadline: float,
    read_cap: int,
    limiter: RateLimiter | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Connection:
    """Connect (and, with `ssl_context`, complete the TLS handshake) before `deadline`."""
    if limiter is not None:
        await limiter.acquire()
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(ip, port, limit=READ_CHUNK)
    except TimeoutError:
        raise NetError(Status.CONNECTION_TIMEOUT, "connect timed out") from None
    except Exception as exc:
        raise map_os_error(exc, connecting=True) from None
    if ssl_context is not None:
        # The handshake comes after a completed TCP connect, so its failures are TLS facts,
        # not reachability ones.
        try:
            async with asyncio.timeout_at(deadline):
                await writer.start_tls(ssl_context, server_hostname=server_hostname or None)
        except TimeoutError:
            writer.transport.abort()
            raise NetError(Status.TLS_ERROR, "TLS handshake timed out") from None
        except Exception as exc:
            writer.transport.abort()
            error = map_os_error(exc, connecting=False)
            if error.status is Status.PROTOCOL_ERROR:  # reset or close mid-handshake
                error = NetError(Status.TLS_ERROR, f"handshake failed: {error.detail}")
            raise error from None
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Small request/response exchanges: Nagle would add 40 ms per round trip.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    return Connection(reader, writer, read_cap)
