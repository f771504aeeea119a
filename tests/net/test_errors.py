"""One hierarchy for what a probe can meet (dicom/errors.py): every failure is a ProbeError,
raised as the peer's (PeerError) or as ours (LocalError), and each keeps the status it had."""

from __future__ import annotations

import asyncio
import errno
import ssl

import pytest

from pacswatch.dicom.errors import (
    LocalError,
    LocalProtocolError,
    PeerAborted,
    PeerError,
    PeerProtocolError,
    ProbeError,
)
from pacswatch.net.errors import LocalNetError, NetError, PeerNetError, map_os_error
from pacswatch.net.limits import RateLimiter
from pacswatch.status import Status


@pytest.mark.parametrize("exc, connecting, status", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True, Status.CONNECTION_REFUSED),
    (ConnectionResetError(errno.ECONNRESET, "reset"), True, Status.CONNECTION_REFUSED),
    (ConnectionResetError(errno.ECONNRESET, "reset"), False, Status.PROTOCOL_ERROR),
    (TimeoutError(), True, Status.CONNECTION_TIMEOUT),
    (TimeoutError(), False, Status.IO_TIMEOUT),
    (OSError(errno.EHOSTUNREACH, "no route"), True, Status.CONNECTION_TIMEOUT),
    (ssl.SSLError(1, "alert"), False, Status.TLS_ERROR),
])
def test_what_the_peer_or_its_network_does_is_a_peer_error(exc, connecting, status):
    error = map_os_error(exc, connecting=connecting)
    assert isinstance(error, PeerNetError) and isinstance(error, PeerError) and not isinstance(error, LocalError)
    assert error.status is status


@pytest.mark.parametrize("exc", [OSError(errno.EADDRNOTAVAIL, "no local port"), ValueError("odd")])
def test_what_our_own_system_does_is_a_local_error(exc):
    error = map_os_error(exc, connecting=True)
    assert isinstance(error, LocalNetError) and isinstance(error, LocalError) and not isinstance(error, PeerError)
    assert error.status is Status.ERROR


def test_an_address_our_scope_refuses_is_a_local_error_with_status_blocked():
    limiter = RateLimiter(0, refuse=lambda ip: "opted out" if ip == "127.62.0.9" else None)
    with pytest.raises(LocalNetError) as caught:
        asyncio.run(limiter.acquire(ip="127.62.0.9"))
    assert caught.value.status is Status.BLOCKED and isinstance(caught.value, LocalError)


def test_the_protocol_cores_peer_errors_are_probe_errors_and_our_bugs_are_not():
    assert isinstance(PeerProtocolError("bad PDU", 2), PeerError)
    assert isinstance(PeerAborted(2, 0, "association"), PeerError)
    # A LocalProtocolError is our code misusing the state machine: a bug, reported as status
    # `error` by the probe's last resort, never caught as something the peer did.
    assert not isinstance(LocalProtocolError("send in Sta1"), ProbeError)
    # NetError is the one class for "a status from the transport", whichever side.
    assert issubclass(PeerNetError, NetError) and issubclass(LocalNetError, NetError)
