"""A minimal sans-IO association acceptor (the SCP side of PS3.8), built on pacswatch's codec.

Bytes in, bytes out: `Acceptor.receive(data)` returns what to send and whether to close. It is
what the fast responder and two hostile peers speak, so it is deliberately small: it accepts
the association, answers C-ECHO with success and C-FIND with success and no pending response,
ignores C-CANCEL, answers A-RELEASE-RQ with A-RELEASE-RP, and aborts on anything else.
Data sets are dropped unread.
"""

from __future__ import annotations

from typing import Callable

from pacswatch.dicom.dimse import Command, CommandField, decode_command, encode_command, fragment_message
from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
from pacswatch.dicom.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PduFramer,
    PresentationContextAC,
    UserInformation,
    encode_pdu,
)
from pacswatch.dicom.uids import IMPLICIT_VR_LE, PATIENT_ROOT_FIND, STUDY_ROOT_FIND, VERIFICATION

# The lab's own implementation identity (a UUID-derived 2.25 UID, PS3.5 B.2): a scanner should
# report it verbatim as an unknown product, never mistake it for pacswatch itself.
LAB_IMPLEMENTATION_UID = "2.25.157145371389364734384012911468402516237"
LAB_VERSION_NAME = "PACSWATCH_LAB"
LAB_MAX_PDU = 16384
# What we accept from a peer in one P-DATA-TF (its header's length): generous, bounded.
RECEIVE_CAP = 1 << 20
MAX_COMMAND = 64 * 1024

ACCEPT, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 3, 4


def accept_all_but_control(abstract_syntax: str) -> bool:
    """Every abstract syntax except a random `2.25.*` one (a scanner's promiscuity control)."""
    return not abstract_syntax.startswith("2.25.")


def accept_echo_and_find(abstract_syntax: str) -> bool:
    return abstract_syntax in (VERIFICATION, PATIENT_ROOT_FIND, STUDY_ROOT_FIND)


def associate_ac(rq: AAssociateRQ, accept: Callable[[str], bool] = accept_all_but_control) -> AAssociateAC:
    """The A-ASSOCIATE-AC for `rq`: each context accepted with Implicit VR LE when `accept` likes
    its abstract syntax and Implicit VR LE was proposed (PS3.8 9.3.3.2 results 0, 3, 4)."""
    results = []
    for ctx in rq.contexts:
        if not accept(ctx.abstract_syntax):
            results.append(PresentationContextAC(ctx.id, ABSTRACT_SYNTAX_NOT_SUPPORTED, IMPLICIT_VR_LE))
        elif IMPLICIT_VR_LE not in ctx.transfer_syntaxes:
            results.append(PresentationContextAC(ctx.id, TRANSFER_SYNTAXES_NOT_SUPPORTED, IMPLICIT_VR_LE))
        else:
            results.append(PresentationContextAC(ctx.id, ACCEPT, IMPLICIT_VR_LE))
    info = UserInformation(LAB_MAX_PDU, LAB_IMPLEMENTATION_UID, LAB_VERSION_NAME)
    return AAssociateAC(rq.called_ae or "ANY-SCP", rq.calling_ae or "ANY-SCU", tuple(results), info)


class Acceptor:
    """One association, acceptor side. States: `idle` (awaiting A-ASSOCIATE-RQ), `open`, `done`.

    `abort_on_data=True` makes the abort-after-request peer: the association is accepted, then
    the first P-DATA-TF is answered with A-ABORT (what Orthanc does to a refused C-FIND).
    """

    __slots__ = ("_framer", "_accept", "_abort_on_data", "state", "_contexts", "_peer_max",
                 "_command", "_pending", "released", "aborted")

    def __init__(self, accept: Callable[[str], bool] = accept_all_but_control, *, abort_on_data: bool = False) -> None:
        self._framer = PduFramer(RECEIVE_CAP)
        self._accept = accept
        self._abort_on_data = abort_on_data
        self.state = "idle"
        self._contexts: set[int] = set()
        self._peer_max = LAB_MAX_PDU
        self._command = bytearray()
        # (context id, command) of a request whose data set is still arriving
        self._pending: tuple[int, Command] | None = None
        self.released = False
        self.aborted = False

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """Feed bytes from the peer; returns (bytes to send, close the connection after them)."""
        if self.state == "done":
            return b"", True
        out: list[bytes] = []
        try:
            for pdu in self._framer.feed(data):
                out.append(self._handle(pdu))
                if self.state == "done":
                    break
        except PeerProtocolError as exc:
            out.append(self._abort(2, exc.abort_reason))
        except LocalProtocolError:
            out.append(self._abort(2, 0))
        return b"".join(out), self.state == "done" and not self.released

    def _abort(self, source: int, reason: int) -> bytes:
        self.state = "done"
        self.aborted = True
        return encode_pdu(AAbort(source, reason))

    def _handle(self, pdu) -> bytes:
        if isinstance(pdu, AAssociateRQ):
            if self.state != "idle":
                return self._abort(2, 2)  # unexpected PDU
            ac = associate_ac(pdu, self._accept)
            self._contexts = {c.id for c in ac.contexts if c.result == ACCEPT}
            self._peer_max = pdu.user_info.max_length or 0
            self.state = "open"
            return encode_pdu(ac)
        if self.state != "open":
            return self._abort(2, 2)
        if isinstance(pdu, PDataTF):
            if self._abort_on_data:
                return self._abort(0, 0)
            return b"".join(self._pdata(pdu))
        if isinstance(pdu, AReleaseRQ):
            self.state = "done"
            self.released = True
            return encode_pdu(AReleaseRP())
        if isinstance(pdu, AAbort):
            self.state = "done"
            self.aborted = True
            return b""
        return self._abort(2, 2)  # AC, RJ or RP sent to an acceptor

    def _pdata(self, pdu: PDataTF):
        for pdv in pdu.pdvs:
            if pdv.context_id not in self._contexts:
                yield self._abort(2, 6)
                return
            if pdv.is_command:
                if self._pending is not None or len(self._command) + len(pdv.data) > MAX_COMMAND:
                    yield self._abort(2, 5)
                    return
                self._command += pdv.data
                if not pdv.is_last:
                    continue
                command = decode_command(bytes(self._command))
                self._command.clear()
                if command.has_data_set:
                    self._pending = (pdv.context_id, command)
                else:
                    yield self._respond(pdv.context_id, command)
            else:
                if self._pending is None:
                    yield self._abort(2, 5)
                    return
                if pdv.is_last:  # the data set itself is dropped unread
                    context_id, command = self._pending
                    self._pending = None
                    yield self._respond(context_id, command)
            if self.state == "done":
                return

    def _respond(self, context_id: int, rq: Command) -> bytes:
        if rq.command_field == CommandField.C_CANCEL_RQ:
            return b""  # no response of its own (PS3.7 9.3.2.3); our FIND is already complete
        if rq.command_field not in (CommandField.C_ECHO_RQ, CommandField.C_FIND_RQ):
            return self._abort(0, 0)  # the fast responder does not store, move or get
        rsp = Command(
            rq.command_field | 0x8000,
            message_id_being_responded_to=rq.message_id,
            affected_sop_class_uid=rq.affected_sop_class_uid,
            status=0x0000,
        )
        pdus = fragment_message(context_id, encode_command(rsp), None, self._peer_max)
        return b"".join(encode_pdu(p) for p in pdus)
