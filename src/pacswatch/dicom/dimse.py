"""PS3.7 DIMSE command sets (C-ECHO, C-FIND, C-CANCEL and their responses) and message fragmenting.

Command sets are always Implicit VR Little Endian (PS3.7 6.3.1): tag group (2), element (2),
length (4), value, all little-endian, even lengths, UIDs padded with NUL. Elements we do not
need are skipped by their length; statuses and fields we do not know are kept as numbers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
from pacswatch.dicom.pdu import PDV, PDataTF, remember

_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")

# A command set of a few hundred bytes is normal; this is generous and still bounded.
MAX_COMMAND_LENGTH = 64 * 1024

NO_DATA_SET = 0x0101
DATA_SET_PRESENT = 0x0000  # any value other than 0x0101 means present; 0x0000 is conventional


class CommandField(IntEnum):
    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    C_CANCEL_RQ = 0x0FFF


# Tags (group 0000), as element numbers
_AFFECTED_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_MESSAGE_ID_RESPONDED = 0x0120
_PRIORITY = 0x0700
_DATA_SET_TYPE = 0x0800
_STATUS = 0x0900
_US_ELEMENTS = {_COMMAND_FIELD, _MESSAGE_ID, _MESSAGE_ID_RESPONDED, _PRIORITY, _DATA_SET_TYPE, _STATUS}


@dataclass(frozen=True, slots=True)
class Command:
    command_field: int
    message_id: int | None = None
    message_id_being_responded_to: int | None = None
    affected_sop_class_uid: str | None = None
    priority: int | None = None
    data_set_type: int = NO_DATA_SET
    status: int | None = None

    @property
    def has_data_set(self) -> bool:
        return self.data_set_type != NO_DATA_SET


def _element(element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def encode_command(cmd: Command) -> bytes:
    parts = []
    if cmd.affected_sop_class_uid is not None:
        parts.append(_element(_AFFECTED_SOP_CLASS, cmd.affected_sop_class_uid.encode("ascii")))
    parts.append(_element(_COMMAND_FIELD, _US.pack(cmd.command_field)))
    if cmd.message_id is not None:
        parts.append(_element(_MESSAGE_ID, _US.pack(cmd.message_id)))
    if cmd.message_id_being_responded_to is not None:
        parts.append(_element(_MESSAGE_ID_RESPONDED, _US.pack(cmd.message_id_being_responded_to)))
    if cmd.priority is not None:
        parts.append(_element(_PRIORITY, _US.pack(cmd.priority)))
    parts.append(_element(_DATA_SET_TYPE, _US.pack(cmd.data_set_type)))
    if cmd.status is not None:
        parts.append(_element(_STATUS, _US.pack(cmd.status)))
    body = b"".join(parts)
    return _element(0x0000, _UL.pack(len(body))) + body


# Responses from servers of one product to one scan's requests are byte for byte the same:
# decoded once (a pure function with a frozen result), in a bounded cache like pdu.py's.
_DECODED: dict[bytes, Command] = {}


def decode_command(data: bytes) -> Command:
    """Decode a command set. Raises PeerProtocolError when it is malformed or lacks CommandField."""
    command = _DECODED.get(data)
    if command is None:
        command = _decode_command(data)
        remember(_DECODED, data, command)
    return command


def _decode_command(data: bytes) -> Command:
    if len(data) > MAX_COMMAND_LENGTH:
        raise PeerProtocolError(f"command set of {len(data)} bytes", abort_reason=6)
    values: dict[int, int | str] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < 8:
            raise PeerProtocolError("truncated command element header", abort_reason=6)
        group, element, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if group != 0x0000:
            raise PeerProtocolError(f"command set element in group {group:04x}", abort_reason=6)
        if length > end - pos:
            raise PeerProtocolError("command element longer than the command set", abort_reason=6)
        raw = data[pos : pos + length]
        pos += length
        if element in _US_ELEMENTS:
            if length != 2:
                raise PeerProtocolError(f"(0000,{element:04x}) must be 2 bytes, not {length}", abort_reason=6)
            values[element] = _US.unpack(raw)[0]
        elif element == _AFFECTED_SOP_CLASS:
            values[element] = raw.decode("ascii", "replace").strip("\x00 ")
        # Everything else (error comments, offending elements, sub-operation counts) is skipped:
        # an error comment is free text from the server and may hold anything.
    if _COMMAND_FIELD not in values:
        raise PeerProtocolError("command set without CommandField", abort_reason=6)
    return Command(
        command_field=values[_COMMAND_FIELD],  # type: ignore[arg-type]
        message_id=values.get(_MESSAGE_ID),  # type: ignore[arg-type]
        message_id_being_responded_to=values.get(_MESSAGE_ID_RESPONDED),  # type: ignore[arg-type]
        affected_sop_class_uid=values.get(_AFFECTED_SOP_CLASS),  # type: ignore[arg-type]
        priority=values.get(_PRIORITY),  # type: ignore[arg-type]
        data_set_type=values.get(_DATA_SET_TYPE, NO_DATA_SET),  # type: ignore[arg-type]
        status=values.get(_STATUS),  # type: ignore[arg-type]
    )


def c_echo_rq(message_id: int, sop_class_uid: str = "1.2.840.10008.1.1") -> Command:
    return Command(CommandField.C_ECHO_RQ, message_id=message_id, affected_sop_class_uid=sop_class_uid)


def c_find_rq(message_id: int, sop_class_uid: str) -> Command:
    return Command(
        CommandField.C_FIND_RQ,
        message_id=message_id,
        affected_sop_class_uid=sop_class_uid,
        priority=0,
        data_set_type=DATA_SET_PRESENT,
    )


def c_cancel_rq(message_id: int) -> Command:
    """C-CANCEL-RQ (PS3.7 9.3.2.3): no SOP class, no data set, refers to the request it cancels."""
    return Command(CommandField.C_CANCEL_RQ, message_id_being_responded_to=message_id)


def fragment_message(
    context_id: int, command: bytes | None, data_set: bytes | None, max_pdu_length: int
) -> list[PDataTF]:
    """Split a message into P-DATA-TF PDUs no larger than the peer's maximum length.

    The command and the data set travel in separate PDUs: some SCPs drop the connection when
    both share one (docs/dicom-reference.md §1.6). A max length of 0 means the peer set no limit.
    """
    if max_pdu_length and max_pdu_length < 8:
        raise LocalProtocolError(f"peer maximum PDU length {max_pdu_length} leaves no room for data")
    # A PDV item adds 6 bytes (length 4, context 1, header 1) inside the PDU's variable field.
    chunk = (max_pdu_length - 6) if max_pdu_length else max(len(command or b""), len(data_set or b""), 1)
    pdus = []
    for payload, is_command in ((command, True), (data_set, False)):
        if payload is None:
            continue
        offsets = range(0, max(len(payload), 1), chunk)
        for start in offsets:
            fragment = payload[start : start + chunk]
            is_last = start + chunk >= len(payload)
            pdus.append(PDataTF((PDV(context_id, is_command, is_last, fragment),)))
    return pdus


# C-FIND status classes (PS3.7 C.4.1.1.4 and Annex C)
def status_category(status: int) -> str:
    if status in (0xFF00, 0xFF01):
        return "pending"
    if status == 0x0000:
        return "success"
    if status == 0xFE00:
        return "cancel"
    if 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"
