"""Transport failures, each carrying the status of the closed vocabulary (docs/design.md)."""

from __future__ import annotations

import errno
import ssl

from pacswatch.status import Status


class NetError(Exception):
    """A transport-level failure; `status` is what the record reports."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


_REFUSED = {errno.ECONNREFUSED}
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def map_os_error(exc: BaseException, *, connecting: bool) -> NetError:
    """Map an exception raised by the OS or the ssl module to a NetError.

    Only this function decides which status an OS error becomes, so every probe agrees.
    """
    if isinstance(exc, NetError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return NetError(Status.TLS_ERROR, _ssl_detail(exc))
    if isinstance(exc, (TimeoutError,)):
        return NetError(Status.CONNECTION_TIMEOUT if connecting else Status.IO_TIMEOUT, "timed out")
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) in _REFUSED:
        return NetError(Status.CONNECTION_REFUSED, "connection refused")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        # A reset during connect on loopback means nobody listens; later it is the peer hanging up.
        if connecting:
            return NetError(Status.CONNECTION_REFUSED, "connection reset during connect")
        return NetError(Status.PROTOCOL_ERROR, "connection reset by peer")
    if getattr(exc, "errno", None) in _UNREACHABLE:
        return NetError(Status.CONNECTION_TIMEOUT, f"unreachable: {getattr(exc, 'strerror', None)}")
    if isinstance(exc, OSError):
        return NetError(Status.ERROR, f"os error {exc.errno}: {exc.strerror}")
    return NetError(Status.ERROR, f"{type(exc).__name__}: {exc}")


def _ssl_detail(exc: ssl.SSLError) -> str:
    return getattr(exc, "reason", None) or str(exc)
