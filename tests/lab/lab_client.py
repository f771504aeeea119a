"""A tiny blocking DICOM requestor over raw sockets (built on pacswatch's codec), for lab tests.

Deliberately not the pacswatch probe: the lab is checked independently of the scanner."""

from __future__ import annotations

import socket

from pacswatch.dicom import uids
from pacswatch.dicom.dimse import c_cancel_rq, c_echo_rq, c_find_rq, decode_command, encode_command, fragment_message
from pacswatch.dicom.identifiers import study_query
from pacswatch.dicom.pdu import (
    AAssociateRQ,
    PduFramer,
    PresentationContextRQ,
    UserInformation,
    encode_pdu,
)

CONTROL = "2.25.123456789012345678901234567890"


def rq(called="ANY-SCP", calling="LABTEST", syntaxes=(uids.VERIFICATION, uids.STUDY_ROOT_FIND, CONTROL),
       transfer=(uids.IMPLICIT_VR_LE,), max_length=16384) -> AAssociateRQ:
    contexts = tuple(PresentationContextRQ(2 * i + 1, s, tuple(transfer)) for i, s in enumerate(syntaxes))
    return AAssociateRQ(called, calling, contexts, UserInformation(max_length, "1.2.3.4", "LABTEST"))


class RawClient:
    def __init__(self, ip: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((ip, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer = PduFramer(1 << 20)
        self.queue: list = []

    def send(self, pdu) -> None:
        self.sock.sendall(encode_pdu(pdu))

    def send_message(self, context_id: int, command, data_set: bytes | None = None) -> None:
        for pdu in fragment_message(context_id, encode_command(command), data_set, 16384):
            self.send(pdu)

    def recv_pdu(self):
        while not self.queue:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("peer closed")
            self.queue.extend(self.framer.feed(data))
        return self.queue.pop(0)

    def recv_command(self):
        pdu = self.recv_pdu()
        return decode_command(pdu.pdvs[0].data)

    def echo(self, context_id: int = 1, message_id: int = 1):
        self.send_message(context_id, c_echo_rq(message_id))
        return self.recv_command()

    def find(self, context_id: int = 3, message_id: int = 2, identifier: bytes | None = None):
        self.send_message(context_id, c_find_rq(message_id, uids.STUDY_ROOT_FIND), identifier or study_query())
        return self.recv_command()

    def cancel(self, context_id: int, message_id: int) -> None:
        self.send_message(context_id, c_cancel_rq(message_id))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
