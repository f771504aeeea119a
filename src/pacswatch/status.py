"""The one status vocabulary every probe reports (docs/design.md, "Rules that hold everywhere")."""

from enum import Enum


class Status(str, Enum):
    SUCCESS = "success"
    CONNECTION_REFUSED = "connection-refused"
    CONNECTION_TIMEOUT = "connection-timeout"
    IO_TIMEOUT = "io-timeout"
    TLS_ERROR = "tls-error"
    PROTOCOL_ERROR = "protocol-error"
    # The peer spoke the protocol and said no, with its reason.
    REJECTED = "rejected"
    # Our scope or blocklist refused the target before any packet.
    BLOCKED = "blocked"
    # Our own bug, with detail.
    ERROR = "error"

    def __str__(self) -> str:  # so f-strings print the wire value
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
