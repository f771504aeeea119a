"""The association-requestor state machine (PS3.8 9.2, Table 9-10), sans I/O.

Only the requestor's side, and only the states a prober passes through:

    Sta1  idle           --request()-->                Sta5 awaiting A-ASSOCIATE-AC/RJ
    Sta5  --AC-->  Sta6 established       --RJ/ABORT-->  Sta1 (closed)
    Sta6  --send()--> Sta6                --release()--> Sta7 awaiting A-RELEASE-RP
    Sta7  --RP--> Sta1                     (P-DATA may still arrive in Sta7: responses in flight)
    any   --abort()--> Sta1                --peer A-ABORT--> Sta1

No clock and no deadline: when the peer must have answered is its caller's business (the probe's
session owns the one timer, probes/dicom/session.py), which calls `abort()` when it gives up.
Received data sets are counted and dropped here, before anything
else can see them: identifiers may hold patient data (docs/design.md, first rule). The one look
inside: a C-FIND response's identifier is read for its Query/Retrieve Level and whether the
level's unique key is there (identifiers.off_level), then dropped; only a count of the responses
that answer another level than asked is kept (docs/dicom-reference.md §3.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from enum import Enum

from pacswatch.dicom.dimse import (
    MAX_COMMAND_LENGTH,
    Command,
    CommandField,
    decode_command,
    encode_command,
    fragment_message,
    status_category,
)
from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
from pacswatch.dicom.identifiers import UnreadableIdentifier, level_and_keys, off_level
from pacswatch.dicom.pdu import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
    PDU,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PduFramer,
    encode_pdu,
)


# A C-FIND identifier of the keys we ask for is a few hundred bytes; one larger than this is
# not read (and not counted), so the look inside costs bounded memory.
MAX_IDENTIFIER_READ = 64 * 1024

# fragment_message's floor: a PDV item header (6 bytes) and at least two bytes of data.
MIN_PEER_MAX_PDU = 8


class State(Enum):
    IDLE = "Sta1"
    AWAITING_AC = "Sta5"
    ESTABLISHED = "Sta6"
    AWAITING_RELEASE_RP = "Sta7"
    CLOSED = "Sta13"


# PDU types a requestor can legally receive in each state (PS3.8 Table 9-10).
_ALLOWED_TYPES = {
    State.AWAITING_AC: frozenset({A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT}),
    State.ESTABLISHED: frozenset({P_DATA_TF, A_RELEASE_RQ, A_ABORT}),
    State.AWAITING_RELEASE_RP: frozenset({P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT}),
}


# ---------------------------------------------------------------- events

@dataclass(frozen=True, slots=True)
class AssociationAccepted:
    ac: AAssociateAC


@dataclass(frozen=True, slots=True)
class AssociationRejected:
    rj: AAssociateRJ


@dataclass(frozen=True, slots=True)
class Aborted:
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """The peer asked to release (legal for an acceptor): answer with `release_response()`."""


@dataclass(frozen=True, slots=True)
class DimseMessage:
    """A complete DIMSE message from the peer. The data set is never kept: only its size."""

    context_id: int
    command: Command
    data_set_length: int


Event = AssociationAccepted | AssociationRejected | Aborted | ReleaseConfirmed | ReleaseRequested | DimseMessage


@dataclass(frozen=True)
class AcceptedContext:
    id: int
    abstract_syntax: str
    transfer_syntax: str


@lru_cache(maxsize=256)
def _encoded_command(context_id: int, command: Command, max_pdu: int) -> bytes:
    # A scan sends the same few commands (same context, message ID and class) to every peer:
    # encoding them once is pure, and saves a noticeable share of the scanner's CPU.
    pdus = fragment_message(context_id, encode_command(command), None, max_pdu)
    return b"".join(encode_pdu(p) for p in pdus)


@lru_cache(maxsize=64)
def _encoded_data_set(context_id: int, data_set: bytes, max_pdu: int) -> bytes:
    # The probe's identifiers are the same for every peer of a scan, too.
    return b"".join(encode_pdu(p) for p in fragment_message(context_id, None, data_set, max_pdu))


def encode_message(context_id: int, command: Command, data_set: bytes | None, max_pdu: int) -> bytes:
    """A DIMSE message as P-DATA-TF bytes: the command, then the data set's PDUs (both cached)."""
    out = _encoded_command(context_id, command, max_pdu)
    if data_set is not None:
        out += _encoded_data_set(context_id, data_set, max_pdu)
    return out


class Association:
    """One association as requestor. Methods return the bytes to send; `receive` returns events."""

    def __init__(self, request: AAssociateRQ, *, max_receive_pdu: int, encoded: bytes | None = None) -> None:
        self.request_pdu = request
        # The caller may pass the request already encoded (the probe encodes it once per scan).
        self._encoded_request = encoded
        self.state = State.IDLE
        self._framer = PduFramer(max_receive_pdu)
        self._proposed = {ctx.id: ctx for ctx in request.contexts}
        self.accepted: dict[int, AcceptedContext] = {}
        self.peer_max_pdu = 0
        # Message being assembled: (context id, command bytes, command, data set length)
        self._command_parts: list[bytes] = []
        self._command_length = 0
        self._command: Command | None = None
        self._message_context: int | None = None
        self._data_set_length = 0
        # C-FIND: the level each of our requests asked (by message ID), the response identifier
        # being read (None: not read), and the count of responses that answered another level.
        self._find_levels: dict[int, str] = {}
        self._identifier: bytearray | None = None
        self._asked: str | None = None  # the level the message being assembled answers, if ours
        self.off_level_identifiers = 0

    # ------------------------------------------------------------ actions (ours)

    def request(self) -> bytes:
        """AE-2: send A-ASSOCIATE-RQ."""
        self._require(State.IDLE, "request")
        self.state = State.AWAITING_AC
        return self._encoded_request or encode_pdu(self.request_pdu)

    def send(self, context_id: int, command: Command, data_set: bytes | None) -> bytes:
        """DT-1: send one DIMSE message on an accepted presentation context."""
        self._require(State.ESTABLISHED, "send")
        if context_id not in self.accepted:
            raise LocalProtocolError(f"presentation context {context_id} was not accepted")
        if command.command_field == CommandField.C_FIND_RQ and data_set and command.message_id is not None:
            self._remember_level(command.message_id, data_set)
        return self._encode_message(context_id, command, data_set)

    def _remember_level(self, message_id: int, identifier: bytes) -> None:
        try:
            level, _ = level_and_keys(identifier)
        except UnreadableIdentifier as exc:
            raise LocalProtocolError(f"our own C-FIND identifier does not parse: {exc}") from None
        if level is not None:
            self._find_levels[message_id] = level

    def send_no_reply(self, context_id: int, command: Command) -> bytes:
        """A message with no response of its own (C-CANCEL-RQ)."""
        self._require(State.ESTABLISHED, "send")
        return self._encode_message(context_id, command, None)

    def _encode_message(self, context_id: int, command: Command, data_set: bytes | None) -> bytes:
        # The max length is the peer's value: one that leaves no room for a PDV is its error
        # (the caller aborts with reason 6), not ours.
        if 0 < self.peer_max_pdu < MIN_PEER_MAX_PDU:
            raise PeerProtocolError(
                f"peer maximum PDU length {self.peer_max_pdu} leaves no room for data", abort_reason=6
            )
        return encode_message(context_id, command, data_set, self.peer_max_pdu)

    def release(self) -> bytes:
        """AR-1: send A-RELEASE-RQ."""
        self._require(State.ESTABLISHED, "release")
        self.state = State.AWAITING_RELEASE_RP
        return encode_pdu(AReleaseRQ())

    def release_response(self) -> bytes:
        """AR-4: answer the peer's A-RELEASE-RQ; the association is over."""
        self.state = State.CLOSED
        return encode_pdu(AReleaseRP())

    def abort(self, reason: int = 0, source: int = 0) -> bytes:
        """AA-1: send A-ABORT (source 0 = service-user, 2 = provider) and close."""
        self._close()
        return encode_pdu(AAbort(source, reason))

    @property
    def is_closed(self) -> bool:
        return self.state in (State.CLOSED, State.IDLE)

    # ------------------------------------------------------------ the peer's bytes

    def receive(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer. Raises PeerProtocolError; then the caller aborts with its reason."""
        if self.state in (State.IDLE, State.CLOSED):
            raise LocalProtocolError(f"receive in {self.state.value}")
        events: list[Event] = []
        try:
            # One PDU at a time, so that nothing after an abort, a rejection or a release is
            # even parsed: junk behind an A-ABORT must not turn it into a protocol error.
            self._framer.push(data)
            while self._type_allowed() and (pdu := self._framer.next_pdu()) is not None:
                if isinstance(pdu, PDataTF) and self.state in (State.ESTABLISHED, State.AWAITING_RELEASE_RP):
                    events.extend(self._on_data(pdu))
                    continue
                event = self._on_pdu(pdu)
                if event is not None:
                    events.append(event)
                # mypy keeps the state narrowed by the test above across _on_pdu, which changes it
                if self.state is State.CLOSED:  # type: ignore[comparison-overlap]
                    break  # nothing after an abort, a rejection or a release matters
        except PeerProtocolError:
            self._close()
            self._framer.clear()
            raise
        return events

    def _type_allowed(self) -> bool:
        """Refuse an unexpected PDU from its type byte, before its body is buffered: a P-DATA-TF
        before the A-ASSOCIATE-AC must not cost a megabyte of reading (Table 9-10: unexpected
        PDUs lead to AA-8, an abort)."""
        pdu_type = self._framer.next_type()
        if pdu_type is None or not A_ASSOCIATE_RQ <= pdu_type <= A_ABORT:
            return True  # nothing buffered; unknown type bytes are the framer's to refuse, with its sniffing
        allowed = _ALLOWED_TYPES.get(self.state)  # after the cheap tests: an Enum hashes in Python
        if allowed is None or pdu_type in allowed:
            return True
        raise PeerProtocolError(f"unexpected PDU type 0x{pdu_type:02x} in {self.state.value}", abort_reason=2)

    def _on_pdu(self, pdu: PDU) -> Event | None:
        if isinstance(pdu, AAbort):
            self._close()
            return Aborted(pdu.source, pdu.reason)
        if self.state is State.AWAITING_AC:
            if isinstance(pdu, AAssociateAC):
                return self._on_accept(pdu)
            if isinstance(pdu, AAssociateRJ):
                self._close()
                return AssociationRejected(pdu)
        elif self.state in (State.ESTABLISHED, State.AWAITING_RELEASE_RP):
            if isinstance(pdu, AReleaseRP) and self.state is State.AWAITING_RELEASE_RP:
                self._close()
                return ReleaseConfirmed()
            if isinstance(pdu, AReleaseRQ):
                # Sta6: the acceptor may release; Sta7: a release collision (PS3.8 9.2.2.2).
                # Either way the caller answers with release_response() and is done.
                return ReleaseRequested()
        raise PeerProtocolError(f"unexpected {type(pdu).__name__} in {self.state.value}", abort_reason=2)

    def _close(self) -> None:
        self.state = State.CLOSED
        self._identifier = None  # an identifier cut off by the end is dropped with it

    def _on_accept(self, ac: AAssociateAC) -> Event:
        for ctx in ac.contexts:
            proposed = self._proposed.get(ctx.id)
            if proposed is None:
                raise PeerProtocolError(f"A-ASSOCIATE-AC answers context {ctx.id} we did not propose", abort_reason=6)
            if ctx.accepted:
                if ctx.transfer_syntax not in proposed.transfer_syntaxes:
                    raise PeerProtocolError(
                        f"context {ctx.id} accepted with a transfer syntax we did not propose", abort_reason=6
                    )
                self.accepted[ctx.id] = AcceptedContext(ctx.id, proposed.abstract_syntax, ctx.transfer_syntax)
        self.peer_max_pdu = ac.user_info.max_length or 0
        self.state = State.ESTABLISHED
        return AssociationAccepted(ac)

    def _on_data(self, pdu: PDataTF) -> list[Event]:
        events: list[Event] = []
        for pdv in pdu.pdvs:
            if pdv.context_id not in self.accepted:
                raise PeerProtocolError(f"P-DATA on context {pdv.context_id} that is not accepted", abort_reason=6)
            if self._message_context is not None and pdv.context_id != self._message_context:
                raise PeerProtocolError("P-DATA interleaves two messages", abort_reason=5)
            self._message_context = pdv.context_id
            if pdv.is_command:
                if self._command is not None:
                    raise PeerProtocolError("command fragment inside a data set", abort_reason=5)
                self._command_length += len(pdv.data)
                if self._command_length > MAX_COMMAND_LENGTH:
                    raise PeerProtocolError("command set too long", abort_reason=6)
                self._command_parts.append(pdv.data)
                if pdv.is_last:
                    self._command = decode_command(b"".join(self._command_parts))
                    self._command_parts = []
                    self._asked = self._asked_level(self._command)
                    self._identifier = bytearray() if self._asked else None
                    if not self._command.has_data_set:
                        events.append(self._complete())
            else:
                if self._command is None or not self._command.has_data_set:
                    raise PeerProtocolError("data set fragment without a command announcing it", abort_reason=5)
                # Counted, not kept: this is where identifiers with patient data are dropped.
                self._data_set_length += len(pdv.data)
                if self._identifier is not None:
                    self._identifier += pdv.data
                    if len(self._identifier) > MAX_IDENTIFIER_READ:
                        self._identifier = None
                if pdv.is_last:
                    events.append(self._complete())
        return events

    def _asked_level(self, command: Command) -> str | None:
        """The level our C-FIND asked, for a pending C-FIND response with an identifier."""
        if command.command_field != CommandField.C_FIND_RSP or not command.has_data_set:
            return None
        if command.status is None or status_category(command.status) != "pending":
            return None
        return self._find_levels.get(command.message_id_being_responded_to or -1)

    def _complete(self) -> DimseMessage:
        # An identifier is read only when its command answers a level we asked (_asked).
        if self._identifier is not None and self._asked is not None and off_level(bytes(self._identifier), self._asked):
            self.off_level_identifiers += 1
        self._identifier = None  # dropped: nothing of it outlives this message
        message = DimseMessage(self._message_context or 0, self._command, self._data_set_length)  # type: ignore[arg-type]
        self._command = None
        self._message_context = None
        self._command_length = 0
        self._data_set_length = 0
        return message

    def _require(self, state: State, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"{action} in {self.state.value}, needs {state.value}")
