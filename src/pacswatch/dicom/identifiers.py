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
