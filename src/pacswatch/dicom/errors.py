"""Errors of the protocol core: the peer's mistakes versus ours (after h11's _util.py).

A `PeerProtocolError` means the bytes we received break PS3.8/PS3.7; it carries the A-ABORT
reason (PS3.8 9.3.8, source 2 = service-provider) we would send. A `LocalProtocolError` means our
own code asked for something the state machine does not allow: a bug, never the peer's fault.
"""


class DicomError(Exception):
    pass


class PeerProtocolError(DicomError):
    # A-ABORT provider reasons: 0 not specified, 1 unrecognized PDU, 2 unexpected PDU,
    # 4 unrecognized PDU parameter, 5 unexpected PDU parameter, 6 invalid PDU parameter value.
    def __init__(self, message: str, abort_reason: int = 0) -> None:
        super().__init__(message)
        self.abort_reason = abort_reason


class LocalProtocolError(DicomError):
    pass
