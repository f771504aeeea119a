"""What a probe can meet on one endpoint, in one hierarchy (after h11's ProtocolError with its
LocalProtocolError and RemoteProtocolError):

    ProbeError                 every one becomes a status on the record, never a crash
    ├── PeerError              the peer's doing (or its network's)
    │   ├── PeerProtocolError  its bytes break PS3.8/PS3.7
    │   ├── PeerAborted        it sent A-ABORT
    │   └── net.errors.PeerNetError: refused, timed out, reset, closed, a failed TLS handshake, a flood
    └── LocalError             ours: our scope refused the address, our system failed the socket
        └── net.errors.LocalNetError

It lives here, in the protocol core that imports nothing, so that `net/` (which may import
`dicom/`) can subclass it and the probes can catch one class. `LocalProtocolError` is not a
ProbeError: it means our own code asked the state machine for something it does not allow,
a bug that the probe reports as status `error` and never mistakes for something the peer did.
"""


class ProbeError(Exception):
    """Something a probe met on an endpoint; the probe turns it into a status."""


class PeerError(ProbeError):
    """The peer broke the protocol, aborted, closed, stalled, refused or flooded."""


class LocalError(ProbeError):
    """Our side stopped the exchange (a rule or a limit of ours), not the peer."""


class PeerProtocolError(PeerError):
    """The bytes received break PS3.8/PS3.7; carries the A-ABORT reason (PS3.8 9.3.8, source 2 =
    service-provider) we would send."""

    # A-ABORT provider reasons: 0 not specified, 1 unrecognized PDU, 2 unexpected PDU,
    # 4 unrecognized PDU parameter, 5 unexpected PDU parameter, 6 invalid PDU parameter value.
    def __init__(self, message: str, abort_reason: int = 0) -> None:
        super().__init__(message)
        self.abort_reason = abort_reason


class PeerAborted(PeerError):
    """The peer sent A-ABORT (PS3.8 9.3.8) during `phase`."""

    def __init__(self, source: int, reason: int, phase: str) -> None:
        super().__init__(f"peer aborted during {phase}")
        self.source, self.reason, self.phase = source, reason, phase


class LocalProtocolError(Exception):
    """Our own code asked the state machine for something it does not allow: a bug."""
