"""Golden bytes, written out field by field with the field named in a comment (PS3.8 9.3, PS3.7
6.3, E.2), against the encoder and the decoder both.

Each golden value was checked by hand against the standard's layout and, where it exists, against
docs/dicom-network-reference.md (the 80-byte C-ECHO-RQ and the 22-byte study identifier are
copied from there). PDU and item fields are big-endian; command sets are little-endian.
"""

from __future__ import annotations

import pytest
from dicom_helpers import CONTROL_UID, PACSWATCH_UID, Peer, established, probe_request

from pacswatch.dicom import uids
from pacswatch.dicom.association import Association, AssociationAccepted
from pacswatch.dicom.dimse import (
    Command,
    CommandField,
    c_cancel_rq,
    c_echo_rq,
    c_find_rq,
    decode_command,
    encode_command,
)
from pacswatch.dicom.identifiers import patient_query, study_query
from pacswatch.dicom.pdu import (
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    decode_pdu,
    encode_pdu,
)


def H(text: str) -> bytes:
    """Hex with spaces allowed: H("01 00 0000004A")."""
    return bytes.fromhex(text)


IMPLICIT = b"1.2.840.10008.1.2"

# ---------------------------------------------------------------- A-ASSOCIATE-RQ (PS3.8 9.3.2)

# As probes/dicom/probe.py builds it: called AE "ANY-SCP", calling AE "PACSWATCH", the 13 probe
# abstract syntaxes plus the control UID, each with Implicit VR Little Endian only, and a user
# information item with max length 16384, our implementation class UID and version name.
PROBE_RQ = b"".join([
    H("01 00 000003CC"),                         # PDU type 0x01, reserved, length 972
    H("0001 0000"),                              # protocol version 1, reserved
    b"ANY-SCP         ",                         # called AE title, space padded to 16
    b"PACSWATCH       ",                         # calling AE title, space padded to 16
    bytes(32),                                   # reserved (32 zero bytes)
    H("10 00 0015"), b"1.2.840.10008.3.1.1.1",   # application context item, 21: DICOM app context
    # Presentation context items: type 0x20, reserved, length; PC-ID, 3 reserved; one abstract
    # syntax sub-item (0x30) and one transfer syntax sub-item (0x40). UIDs unpadded.
    H("20 00 002E 01 000000"),                   # PC 1, item length 46
    H("30 00 0011"), b"1.2.840.10008.1.1",       #   abstract syntax (17): Verification
    H("40 00 0011"), IMPLICIT,                   #   transfer syntax (17): Implicit VR LE
    H("20 00 0038 03 000000"),                   # PC 3, item length 56
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.2.1",  # abstract syntax (27): Study Root FIND
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 05 000000"),                   # PC 5
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.1.1",  # Patient Root FIND
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 07 000000"),                   # PC 7
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.2.2",  # Study Root MOVE
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 09 000000"),                   # PC 9
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.1.2",  # Patient Root MOVE
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 0B 000000"),                   # PC 11
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.2.3",  # Study Root GET
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 0D 000000"),                   # PC 13
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.1.3",  # Patient Root GET
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 0F 000000"),                   # PC 15
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.4.2",  # Composite Instance Root MOVE
    H("40 00 0011"), IMPLICIT,
    H("20 00 0038 11 000000"),                   # PC 17
    H("30 00 001B"), b"1.2.840.10008.5.1.4.1.2.4.3",  # Composite Instance Root GET
    H("40 00 0011"), IMPLICIT,
    H("20 00 0033 13 000000"),                   # PC 19, item length 51
    H("30 00 0016"), b"1.2.840.10008.5.1.4.31",  # abstract syntax (22): Modality Worklist FIND
    H("40 00 0011"), IMPLICIT,
    H("20 00 0036 15 000000"),                   # PC 21, item length 54
    H("30 00 0019"), b"1.2.840.10008.5.1.4.1.1.2",    # abstract syntax (25): CT Image Storage
    H("40 00 0011"), IMPLICIT,
    H("20 00 0036 17 000000"),                   # PC 23
    H("30 00 0019"), b"1.2.840.10008.5.1.4.1.1.4",    # MR Image Storage
    H("40 00 0011"), IMPLICIT,
    H("20 00 0036 19 000000"),                   # PC 25
    H("30 00 0019"), b"1.2.840.10008.5.1.4.1.1.7",    # Secondary Capture Image Storage
    H("40 00 0011"), IMPLICIT,
    H("20 00 0027 1B 000000"),                   # PC 27, item length 39: the control context
    H("30 00 000A"), b"2.25.12345",              #   abstract syntax (10, odd, unpadded): control UID
    H("40 00 0011"), IMPLICIT,
    H("50 00 0049"),                             # user information item, length 73
    H("51 00 0004 00004000"),                    #   maximum length sub-item: 16384
    H("52 00 002C"), PACSWATCH_UID.encode(),     #   implementation class UID (44)
    H("55 00 000D"), b"PACSWATCH_010",           #   implementation version name (13)
])

# ---------------------------------------------------------------- A-ASSOCIATE-AC (PS3.8 9.3.3)

GOLDEN_AC = b"".join([
    H("02 00 000000E5"),                         # PDU type 0x02, reserved, length 229
    H("0001 0000"),                              # protocol version 1, reserved
    b"ANY-SCP         ",                         # called AE (echoed; not to be tested)
    b"PACSWATCH       ",                         # calling AE (echoed)
    bytes(32),                                   # reserved
    H("10 00 0015"), b"1.2.840.10008.3.1.1.1",   # application context item
    H("21 00 0019"),                             # presentation context (AC) item, length 25
    H("01 00 00 00"),                            #   PC 1, reserved, result 0 acceptance, reserved
    H("40 00 0011"), IMPLICIT,                   #   transfer syntax: Implicit VR LE
    H("21 00 0019 03 00 00 00"),                 # PC 3, acceptance
    H("40 00 0011"), IMPLICIT,
    H("21 00 0008 1B 00 03 00"),                 # PC 27, result 3 abstract-syntax-not-supported
    H("40 00 0000"),                             #   transfer syntax sub-item, empty (not significant)
    H("50 00 003E"),                             # user information item, length 62
    H("51 00 0004 00003FFE"),                    #   maximum length: 16382
    H("52 00 0020"), b"1.2.826.0.1.3680043.9.3811.3.0.4",  # implementation class UID (32): pynetdicom
    H("55 00 000E"), b"PYNETDICOM_304",          #   implementation version name (14)
])

GOLDEN_AC_PDU = AAssociateAC(
    called_ae="ANY-SCP",
    calling_ae="PACSWATCH",
    contexts=(
        PresentationContextAC(1, 0, uids.IMPLICIT_VR_LE),
        PresentationContextAC(3, 0, uids.IMPLICIT_VR_LE),
        PresentationContextAC(27, 3, None),
    ),
    user_info=UserInformation(16382, "1.2.826.0.1.3680043.9.3811.3.0.4", "PYNETDICOM_304"),
)

# ---------------------------------------------------------------- fixed-size PDUs

GOLDEN_RJ = H(
    "03 00 00000004"  # PDU type 0x03 A-ASSOCIATE-RJ, reserved, length 4
    "00"              # reserved
    "01"              # result 1: rejected-permanent
    "01"              # source 1: service-user
    "07"              # reason 7: called-AE-title-not-recognized
)
GOLDEN_RELEASE_RQ = H("05 00 00000004 00000000")  # A-RELEASE-RQ, length 4, 4 reserved bytes
GOLDEN_RELEASE_RP = H("06 00 00000004 00000000")  # A-RELEASE-RP, length 4, 4 reserved bytes
GOLDEN_ABORT_PROVIDER = H(
    "07 00 00000004"  # PDU type 0x07 A-ABORT, reserved, length 4
    "00 00"           # reserved, reserved
    "02"              # source 2: service-provider
    "02"              # reason 2: unexpected PDU
)
GOLDEN_ABORT_USER = H("07 00 00000004 00 00 00 00")  # A-ABORT, source 0 service-user, reason 0

# ---------------------------------------------------------------- P-DATA-TF (PS3.8 9.3.5, E.2)

# The C-ECHO-RQ of docs/dicom-reference.md §2.2, MessageID 1, on PC 1: 80 bytes.
GOLDEN_ECHO = b"".join([
    H("04 00 0000004A"),                         # PDU type 0x04 P-DATA-TF, reserved, length 74
    H("00000046"),                               # PDV item length 70 (PC-ID + MCH + 68)
    H("01"),                                     # presentation context ID 1
    H("03"),                                     # message control header: command, last fragment
    H("0000 0000 04000000 38000000"),            # (0000,0000) UL length 4: CommandGroupLength 56
    H("0000 0200 12000000"), b"1.2.840.10008.1.1\x00",  # (0000,0002) UI 18: AffectedSOPClassUID, NUL pad
    H("0000 0001 02000000 3000"),                # (0000,0100) US: CommandField 0x0030 C-ECHO-RQ
    H("0000 1001 02000000 0100"),                # (0000,0110) US: MessageID 1
    H("0000 0008 02000000 0101"),                # (0000,0800) US: CommandDataSetType 0x0101 none
])

# C-FIND-RQ (Study Root, MessageID 3, PC 3): the command in one PDU ...
GOLDEN_FIND_COMMAND = b"".join([
    H("04 00 0000005E"),                         # P-DATA-TF, length 94
    H("0000005A 03 03"),                         # PDV length 90, PC 3, MCH 0x03 command + last
    H("0000 0000 04000000 4C000000"),            # (0000,0000) CommandGroupLength 76
    H("0000 0200 1C000000"), b"1.2.840.10008.5.1.4.1.2.2.1\x00",  # (0000,0002) 28: Study Root FIND
    H("0000 0001 02000000 2000"),                # (0000,0100) CommandField 0x0020 C-FIND-RQ
    H("0000 1001 02000000 0300"),                # (0000,0110) MessageID 3
    H("0000 0007 02000000 0000"),                # (0000,0700) Priority 0 medium
    H("0000 0008 02000000 0000"),                # (0000,0800) CommandDataSetType 0x0000: present
])
# ... and the identifier in its own PDU, MCH 0x02 (data set, last). The 22 bytes of docs/dicom-reference.md §2.3.
GOLDEN_STUDY_IDENTIFIER = b"".join([
    H("0800 5200 06000000"), b"STUDY ",          # (0008,0052) CS QueryRetrieveLevel "STUDY", space pad
    H("2000 0D00 00000000"),                     # (0020,000D) UI StudyInstanceUID, empty: universal
])
GOLDEN_FIND_IDENTIFIER = b"".join([
    H("04 00 0000001C"),                         # P-DATA-TF, length 28
    H("00000018 03 02"),                         # PDV length 24, PC 3, MCH 0x02 data set + last
    GOLDEN_STUDY_IDENTIFIER,
])

# C-CANCEL-RQ for MessageID 3 on PC 3 (PS3.7 9.3.2.3): no SOP class, no data set.
GOLDEN_CANCEL = b"".join([
    H("04 00 00000030"),                         # P-DATA-TF, length 48
    H("0000002C 03 03"),                         # PDV length 44, PC 3, command + last
    H("0000 0000 04000000 1E000000"),            # (0000,0000) CommandGroupLength 30
    H("0000 0001 02000000 FF0F"),                # (0000,0100) CommandField 0x0FFF C-CANCEL-RQ
    H("0000 2001 02000000 0300"),                # (0000,0120) MessageIDBeingRespondedTo 3
    H("0000 0008 02000000 0101"),                # (0000,0800) CommandDataSetType 0x0101 none
])

# C-FIND-RSP pending (0xFF00) as an SCP sends it, for the decoder.
GOLDEN_FIND_PENDING_COMMAND = b"".join([
    H("0000 0000 04000000 4C000000"),            # CommandGroupLength 76
    H("0000 0200 1C000000"), b"1.2.840.10008.5.1.4.1.2.2.1\x00",  # AffectedSOPClassUID
    H("0000 0001 02000000 2080"),                # CommandField 0x8020 C-FIND-RSP
    H("0000 2001 02000000 0300"),                # MessageIDBeingRespondedTo 3
    H("0000 0008 02000000 FEFE"),                # CommandDataSetType 0xFEFE: present (any ≠ 0x0101)
    H("0000 0009 02000000 00FF"),                # Status 0xFF00 pending
])


# ---------------------------------------------------------------- tests


def test_probe_request_golden():
    rq = probe_request()
    assert [c.id for c in rq.contexts] == list(range(1, 28, 2))
    assert rq.contexts[-1].abstract_syntax == CONTROL_UID
    assert len(PROBE_RQ) == 978
    assert encode_pdu(rq) == PROBE_RQ
    assert decode_pdu(PROBE_RQ) == rq


def test_association_request_sends_the_golden_rq():
    assoc = Association(probe_request(), max_receive_pdu=1 << 20)
    assert assoc.request() == PROBE_RQ


def test_accept_golden():
    assert len(GOLDEN_AC) == 235
    assert encode_pdu(GOLDEN_AC_PDU) == GOLDEN_AC
    assert decode_pdu(GOLDEN_AC) == GOLDEN_AC_PDU


def test_accept_golden_drives_the_state_machine():
    assoc = Association(probe_request(), max_receive_pdu=1 << 20)
    assoc.request()
    (event,) = assoc.receive(GOLDEN_AC)
    assert isinstance(event, AssociationAccepted) and event.ac == GOLDEN_AC_PDU
    assert sorted(assoc.accepted) == [1, 3]  # 27 (the control) was rejected
    assert assoc.accepted[3].abstract_syntax == uids.STUDY_ROOT_FIND
    assert assoc.peer_max_pdu == 16382


def test_accept_with_nul_padded_uids_and_rejected_context_keeping_its_transfer_syntax():
    # pynetdicom keeps the proposed transfer syntax in a rejected context's item; some stacks pad
    # UIDs with NUL to an even length. Both are legal: accept both (docs/dicom-reference.md §1.3).
    body = b"".join([
        H("0001 0000"), b"ANY-SCP         ", b"PACSWATCH       ", bytes(32),
        H("10 00 0016"), b"1.2.840.10008.3.1.1.1\x00",  # application context, NUL padded to 22
        H("21 00 001A 01 00 00 00"),
        H("40 00 0012"), IMPLICIT + b"\x00",            # transfer syntax NUL padded to 18
        H("21 00 001A 03 00 04 00"),                    # PC 3, result 4: transfer syntaxes not supported
        H("40 00 0012"), IMPLICIT + b"\x00",
        H("50 00 0008 51 00 0004 00000000"),            # max length 0: no limit
    ])
    pdu = decode_pdu(H("02 00") + len(body).to_bytes(4, "big") + body)
    assert pdu == AAssociateAC(
        "ANY-SCP", "PACSWATCH",
        (PresentationContextAC(1, 0, uids.IMPLICIT_VR_LE), PresentationContextAC(3, 4, uids.IMPLICIT_VR_LE)),
        UserInformation(max_length=0),
    )


@pytest.mark.parametrize(
    "golden, pdu",
    [
        (GOLDEN_RJ, AAssociateRJ(result=1, source=1, reason=7)),
        (GOLDEN_RELEASE_RQ, AReleaseRQ()),
        (GOLDEN_RELEASE_RP, AReleaseRP()),
        (GOLDEN_ABORT_PROVIDER, AAbort(source=2, reason=2)),
        (GOLDEN_ABORT_USER, AAbort(source=0, reason=0)),
    ],
)
def test_fixed_size_pdus_golden(golden, pdu):
    assert len(golden) == 10
    assert encode_pdu(pdu) == golden
    assert decode_pdu(golden) == pdu


def test_association_release_and_abort_send_golden_bytes():
    assoc = established()
    assert assoc.release() == GOLDEN_RELEASE_RQ
    assert established().abort() == GOLDEN_ABORT_USER
    assert established().abort(reason=2, source=2) == GOLDEN_ABORT_PROVIDER
    assert established().release_response() == GOLDEN_RELEASE_RP


def test_echo_golden_is_the_references_80_bytes():
    assert len(GOLDEN_ECHO) == 80
    assert encode_command(c_echo_rq(1)) == GOLDEN_ECHO[12:]
    assoc = established()
    assert assoc.send(1, c_echo_rq(1), None) == GOLDEN_ECHO
    assert decode_pdu(GOLDEN_ECHO) == PDataTF((PDV(1, True, True, GOLDEN_ECHO[12:]),))
    assert decode_command(GOLDEN_ECHO[12:]) == Command(
        CommandField.C_ECHO_RQ, message_id=1, affected_sop_class_uid=uids.VERIFICATION
    )


def test_find_golden_command_and_identifier_in_separate_pdus():
    assert len(GOLDEN_STUDY_IDENTIFIER) == 22
    assert study_query("") == GOLDEN_STUDY_IDENTIFIER
    assoc = established()
    sent = assoc.send(3, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(""))
    assert sent == GOLDEN_FIND_COMMAND + GOLDEN_FIND_IDENTIFIER
    ((context, command, data_set),) = Peer().messages(sent)
    assert (context, data_set) == (3, GOLDEN_STUDY_IDENTIFIER)
    assert command == c_find_rq(3, uids.STUDY_ROOT_FIND)


def test_find_with_a_random_uid_pads_with_nul_and_patient_query_pads_with_space():
    # Odd-length UI values pad with NUL, text with space (PS3.5 6.2).
    assert study_query("2.25.1") == b"".join([
        H("0800 5200 06000000"), b"STUDY ",
        H("2000 0D00 06000000"), b"2.25.1",          # even already: no pad
    ])
    assert study_query("2.25.12") == b"".join([
        H("0800 5200 06000000"), b"STUDY ",
        H("2000 0D00 08000000"), b"2.25.12\x00",     # (0020,000D) UI, NUL padded
    ])
    assert patient_query("") == b"".join([
        H("0800 5200 08000000"), b"PATIENT ",        # (0008,0052) CS "PATIENT", space padded
        H("1000 2000 00000000"),                     # (0010,0020) LO PatientID, empty: universal
    ])


def test_cancel_golden():
    assert encode_command(c_cancel_rq(3)) == GOLDEN_CANCEL[12:]
    assoc = established()
    assoc.send(3, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(""))
    assert assoc.send_no_reply(3, c_cancel_rq(3)) == GOLDEN_CANCEL


def test_find_pending_golden_decodes():
    assert decode_command(GOLDEN_FIND_PENDING_COMMAND) == Command(
        CommandField.C_FIND_RSP,
        message_id_being_responded_to=3,
        affected_sop_class_uid=uids.STUDY_ROOT_FIND,
        data_set_type=0xFEFE,
        status=0xFF00,
    )


def test_golden_rq_and_ac_are_distinct_types():
    # The same bytes with the type byte swapped decode as the other PDU: the fixed part is shared,
    # but the presentation context items (0x20 vs 0x21) are only read by the right PDU.
    as_ac = decode_pdu(b"\x02" + PROBE_RQ[1:])
    assert isinstance(as_ac, AAssociateAC) and as_ac.contexts == ()
    as_rq = decode_pdu(b"\x01" + GOLDEN_AC[1:])
    assert isinstance(as_rq, AAssociateRQ) and as_rq.contexts == ()


def test_presentation_context_rq_with_several_transfer_syntaxes():
    rq = AAssociateRQ(
        "ANY-SCP", "PACSWATCH",
        (PresentationContextRQ(1, uids.VERIFICATION, (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE)),),
    )
    body = b"".join([
        H("0001 0000"), b"ANY-SCP         ", b"PACSWATCH       ", bytes(32),
        H("10 00 0015"), b"1.2.840.10008.3.1.1.1",
        H("20 00 0045 01 000000"),                   # PC 1, item length 69
        H("30 00 0011"), b"1.2.840.10008.1.1",       #   Verification
        H("40 00 0013"), b"1.2.840.10008.1.2.1",     #   Explicit VR LE (19)
        H("40 00 0011"), IMPLICIT,                   #   Implicit VR LE (17)
        H("50 00 0000"),                             # user information, empty
    ])
    golden = H("01 00") + len(body).to_bytes(4, "big") + body
    assert encode_pdu(rq) == golden
    assert decode_pdu(golden) == rq


def test_request_template_splices_the_called_ae_exactly_as_a_full_encoding():
    from hypothesis import given
    from hypothesis import strategies as st

    from pacswatch.dicom.pdu import encode_pdu

    from dicom_helpers import probe_template

    template = probe_template()

    @given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ ", min_size=1, max_size=16).filter(str.strip))
    def check(called_ae):
        request, encoded = template.build(called_ae)
        assert encoded == encode_pdu(request)

    check()
