"""The few C-FIND identifiers the probe sends, encoded in Implicit VR Little Endian.

Hand-encoded rather than built with pydicom: they are two or three elements, and this runs once
per endpoint in the hot path. Only unique keys are asked for (docs/dicom-reference.md §3.2): never
PatientName or anything else a server would fill in for us.
"""

from __future__ import annotations

import struct

_ELEMENT = struct.Struct("<HHI")

QUERY_RETRIEVE_LEVEL = (0x0008, 0x0052)
PATIENT_ID = (0x0010, 0x0020)
STUDY_INSTANCE_UID = (0x0020, 0x000D)


def _element(tag: tuple[int, int], value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return _ELEMENT.pack(tag[0], tag[1], len(value)) + value


def encode_identifier(elements: list[tuple[tuple[int, int], str, bytes]]) -> bytes:
    """elements: (tag, vr, value); sorted by tag as PS3.5 7.1 requires. UI pads with NUL, text with space."""
    out = []
    for tag, vr, value in sorted(elements, key=lambda e: e[0]):
        out.append(_element(tag, value, b"\x00" if vr == "UI" else b" "))
    return b"".join(out)


def study_query(study_instance_uid: str = "") -> bytes:
    """STUDY level of Study Root; an empty UID is a universal match (count), a random one
    checks permission without matching anything."""
    return encode_identifier([
        (QUERY_RETRIEVE_LEVEL, "CS", b"STUDY"),
        (STUDY_INSTANCE_UID, "UI", study_instance_uid.encode("ascii")),
    ])


def patient_query(patient_id: str = "") -> bytes:
    """PATIENT level of Patient Root on the unique key only: empty is a universal match (count),
    a random value checks permission when only Patient Root is offered."""
    return encode_identifier([
        (QUERY_RETRIEVE_LEVEL, "CS", b"PATIENT"),
        (PATIENT_ID, "LO", patient_id.encode("ascii")),
    ])


# ---------------------------------------------------------------- reading a response's identifier
#
# PS3.4 C.4.1.1.3.2: a C-FIND response's identifier carries the Query/Retrieve Level of the
# request and the keys asked for, the unique key of that level among them. A stub that answers
# every query with one canned data set gets this wrong. The identifier is read here for tags and
# for the level's code string only: no other value is decoded, and nothing is kept but a yes/no.

UNIQUE_KEY = {"PATIENT": PATIENT_ID, "STUDY": STUDY_INSTANCE_UID}
_UNDEFINED = 0xFFFFFFFF
_DELIMITERS = {(0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)}  # item and sequence delimitation
_MAX_NESTING = 8


class UnreadableIdentifier(ValueError):
    """An identifier that does not parse as Implicit VR Little Endian."""


def _header(data: bytes, pos: int) -> tuple[tuple[int, int], int, int]:
    if len(data) - pos < 8:
        raise UnreadableIdentifier("truncated element header")
    group, element, length = _ELEMENT.unpack_from(data, pos)
    return (group, element), length, pos + 8


def _skip_undefined(data: bytes, pos: int, depth: int) -> int:
    """Skip the content of an undefined-length sequence or item: to just past its delimiter."""
    if depth > _MAX_NESTING:
        raise UnreadableIdentifier("sequences nested too deep")
    while True:
        tag, length, pos = _header(data, pos)
        if tag in _DELIMITERS:
            return pos
        pos = _skip_undefined(data, pos, depth + 1) if length == _UNDEFINED else pos + length
        if pos > len(data):
            raise UnreadableIdentifier("element longer than the identifier")


def level_and_keys(identifier: bytes) -> tuple[str | None, frozenset[tuple[int, int]]]:
    """The Query/Retrieve Level (None when absent) and which unique keys carry a value (present,
    non-empty); top-level elements only. Raises UnreadableIdentifier."""
    level = None
    present = set()
    pos = 0
    while pos < len(identifier):
        tag, length, pos = _header(identifier, pos)
        if length == _UNDEFINED:
            pos = _skip_undefined(identifier, pos, 1)
            continue
        if pos + length > len(identifier):
            raise UnreadableIdentifier("element longer than the identifier")
        if tag == QUERY_RETRIEVE_LEVEL:
            level = identifier[pos : pos + length].decode("ascii", "replace").strip(" \x00").upper()
        elif tag in (PATIENT_ID, STUDY_INSTANCE_UID) and identifier[pos : pos + length].strip(b" \x00"):
            present.add(tag)  # present or absent only: the value itself is never looked at again
        pos += length
    return level, frozenset(present)


def off_level(identifier: bytes, asked: str) -> bool:
    """Whether a C-FIND response's identifier answers another level than `asked`: its
    Query/Retrieve Level differs, or the unique key of the level asked is missing. A response
    without the level element is judged on the key alone (older SCPs leave the level out); an
    identifier that does not parse is not counted (nothing can be said of it)."""
    try:
        level, present = level_and_keys(identifier)
    except UnreadableIdentifier:
        return False
    if level is not None and level != asked:
        return True
    key = UNIQUE_KEY.get(asked)
    return key is not None and key not in present
