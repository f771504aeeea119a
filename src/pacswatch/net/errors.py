"""Transport failures, each carrying the status of the closed vocabulary (docs/design.md).

They are probe errors (dicom/errors.py has the hierarchy): a failure is raised as the peer's
(`PeerNetError`: refused, timed out, reset, closed, a failed TLS handshake, past a byte cap) or
as ours (`LocalNetError`: our scope refused the address, our system failed the socket), and
callers that need only the status catch `NetError`.
"""

from __future__ import annotations

import errno
import ssl

from pacswatch.dicom.errors import LocalError, PeerError, ProbeError
from pacswatch.status import Status


class NetError(ProbeError):
    """A transport-level failure; `status` is what the record reports. Raised as one of the two
    classes below, which say whose doing it was."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class PeerNetError(NetError, PeerError):
    """The peer or the path to it."""


class LocalNetError(NetError, LocalError):
    """Our side: the scope (status `blocked`) or our own system (status `error`)."""


_REFUSED = {errno.ECONNREFUSED}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def map_os_error(exc: BaseException, *, connecting: bool) -> NetError:
    """Map an exception raised by the OS or the ssl module to a NetError of the side it belongs to.

    Only this function decides which status an OS error becomes, so every probe agrees.
    """
    if isinstance(exc, NetError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return PeerNetError(Status.TLS_ERROR, _ssl_detail(exc))
    if isinstance(exc, (TimeoutError,)):
        return PeerNetError(Status.CONNECTION_TIMEOUT if connecting else Status.IO_TIMEOUT, "timed out")
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) in _REFUSED:
        return PeerNetError(Status.CONNECTION_REFUSED, "connection refused")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        # A reset during connect on loopback means nobody listens; later it is the peer hanging up.
        if connecting:
            return PeerNetError(Status.CONNECTION_REFUSED, "connection reset during connect")
        return PeerNetError(Status.PROTOCOL_ERROR, "connection reset by peer")
    if getattr(exc, "errno", None) in _UNREACHABLE:
        return PeerNetError(Status.CONNECTION_TIMEOUT, f"unreachable: {getattr(exc, 'strerror', None)}")
    if isinstance(exc, OSError):
        return LocalNetError(Status.ERROR, f"os error {exc.errno}: {exc.strerror}")
    return LocalNetError(Status.ERROR, f"{type(exc).__name__}: {exc}")


def _ssl_detail(exc: ssl.SSLError) -> str:
    return getattr(exc, "reason", None) or str(exc)
