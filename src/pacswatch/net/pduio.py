"""The PDU engine (`_pduio`, C) attached to a running event loop.

The engine does the I/O of many plain TCP connections at once and hands over their input cut
into DICOM PDUs; `PduLink` registers its epoll descriptor with the event loop and calls each
connection's handler with `(kind, value)` as things happen:

    CONNECTED  None        the connect completed
    PDU        bytes       one whole PDU (header included)
    DATA       bytes       bytes that are not (yet) a whole PDU: a peer that does not speak
                           DICOM, a partial PDU before the end, or a length past the frame cap
    EOF        None        the peer closed its side
    ERROR      errno       the connect or the connection failed
    TIMEOUT    None        the deadline passed (the connect's, then the one given with send)
    CAP        bytes cap   the peer sent more than the connection's byte cap

No event comes for a connection after `close` or `abort`. TLS connections are not for the
engine: they stay on asyncio's transports (net/transport.py).

Deadlines are loop times; the engine keeps CLOCK_MONOTONIC, which asyncio's clock is and
uvloop's follows (coarsely); the offset between the two is measured once per link anyway.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Callable

try:
    from pacswatch.net import _pduio
except ImportError:  # not built (no C compiler, not Linux): probes use asyncio's transports
    _pduio = None  # type: ignore[assignment]  # checked before every use

Handler = Callable[[int, object], None]

if _pduio is not None:
    CONNECTED, PDU, DATA, EOF, ERROR, TIMEOUT, CAP = (
        _pduio.CONNECTED, _pduio.PDU, _pduio.DATA, _pduio.EOF, _pduio.ERROR, _pduio.TIMEOUT, _pduio.CAP)
else:
    CONNECTED, PDU, DATA, EOF, ERROR, TIMEOUT, CAP = range(1, 8)


def available() -> bool:
    """Whether the engine is built and not turned off (PACSWATCH_PDU_ENGINE=0, for comparisons)."""
    return _pduio is not None and os.environ.get("PACSWATCH_PDU_ENGINE", "1") != "0"


class PduLink:
    """One engine on one event loop, for one probe context (ProbeContext.close shuts it down)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _pduio is not None
        self.loop = loop
        self._engine = _pduio.Engine()
        self._handlers: dict[int, Handler] = {}
        self._offset = time.monotonic() - loop.time()
        self.closed = False
        loop.add_reader(self._engine.fileno(), self._ready)

    def connect(self, ip: str, port: int, deadline: float, read_cap: int, handler: Handler) -> int:
        """Start connecting; raises OSError when that fails at once, ValueError for a non-IP."""
        tag = self._engine.connect(ip, port, deadline + self._offset, read_cap)
        self._handlers[tag] = handler
        return tag

    def send(self, tag: int, data: bytes, deadline: float | None) -> None:
        """Write `data` (may be empty) and wait for the peer until `deadline` (None: no limit)."""
        self._engine.send(tag, data, 0.0 if deadline is None else deadline + self._offset)

    def close(self, tag: int) -> None:
        """Close once what was written has left (bounded by the last deadline given)."""
        self._handlers.pop(tag, None)
        self._engine.close(tag)

    def abort(self, tag: int) -> None:
        self._handlers.pop(tag, None)
        self._engine.abort(tag)

    def _ready(self) -> None:
        handlers = self._handlers
        for tag, kind, value in self._engine.poll():
            handler = handlers.get(tag)
            if handler is not None:
                try:
                    handler(kind, value)
                except Exception as exc:  # a handler's bug must not cost the batch's other events
                    self.loop.call_exception_handler({"message": "PDU engine handler failed", "exception": exc})

    def shutdown(self) -> None:
        """Close every connection and the engine. One link serves a context for good: an engine
        given back when idle and made again soon after got a recycled descriptor number, and
        uvloop then missed its events (a scan hung)."""
        if self.closed:
            return
        self.closed = True
        self._handlers.clear()
        try:
            self.loop.remove_reader(self._engine.fileno())
        except (RuntimeError, ValueError, OSError):  # the loop is closed already
            pass
        self._engine.shutdown()
