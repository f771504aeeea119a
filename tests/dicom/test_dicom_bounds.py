"""Bounds (docs/dicom-reference.md §7.3-7.5): a peer's length is never trusted. Headers are refused
before their body is buffered, every item must fit its parent, item counts are capped, and a
peer that is not speaking DICOM is named in the error."""

from __future__ import annotations

import struct

import pytest
from dicom_helpers import established
from test_dicom_golden import GOLDEN_AC, GOLDEN_ECHO, PROBE_RQ, H

from pacswatch.dicom.association import Association
from pacswatch.dicom.dimse import MAX_COMMAND_LENGTH, c_echo_rq, decode_command, encode_command
from pacswatch.dicom.errors import PeerProtocolError
from pacswatch.dicom.pdu import (
    MAX_ASSOCIATE_LENGTH,
    MAX_ITEMS,
    PDV,
    AAssociateAC,
    PDataTF,
    PduFramer,
    decode_pdu,
    encode_pdu,
)

FIXED_PART = H("0001 0000") + b"ANY-SCP         " + b"PACSWATCH       " + bytes(32)
APP_CONTEXT = H("10 00 0015") + b"1.2.840.10008.3.1.1.1"


def header(pdu_type: int, length: int) -> bytes:
    return bytes([pdu_type, 0]) + struct.pack(">I", length)


def associate(pdu_type: int, items: bytes) -> bytes:
    body = FIXED_PART + items
    return header(pdu_type, len(body)) + body


def item(item_type: int, value: bytes, length: int | None = None) -> bytes:
    return bytes([item_type, 0]) + struct.pack(">H", len(value) if length is None else length) + value


def raises_both(data: bytes, match: str | None = None, cap: int = 1 << 20) -> PeerProtocolError:
    """decode_pdu and the framer (whole and byte by byte) all refuse the bytes."""
    with pytest.raises(PeerProtocolError, match=match):
        decode_pdu(data)
    with pytest.raises(PeerProtocolError, match=match):
        PduFramer(cap).feed(data)
    framer = PduFramer(cap)
    with pytest.raises(PeerProtocolError, match=match) as info:
        for i in range(len(data)):
            framer.feed(data[i : i + 1])
    return info.value


# ---------------------------------------------------------------- huge lengths, from the header alone


@pytest.mark.parametrize("pdu_type", range(1, 8))
def test_huge_length_is_refused_from_the_six_byte_header(pdu_type):
    framer = PduFramer(1 << 20)
    with pytest.raises(PeerProtocolError) as info:
        framer.feed(header(pdu_type, 0xFFFFFFF0))
    assert info.value.abort_reason == 6
    assert framer.buffered <= 6

    # Byte by byte: nothing until the sixth byte, then the refusal; never more than 6 buffered.
    framer = PduFramer(1 << 20)
    for byte in header(pdu_type, 0xFFFFFFF0)[:5]:
        assert framer.feed(bytes([byte])) == []
    with pytest.raises(PeerProtocolError):
        framer.feed(header(pdu_type, 0xFFFFFFF0)[5:])
    assert framer.buffered <= 6

    # With body bytes in the same read, still refused at once: what was fed, nothing allocated.
    framer = PduFramer(1 << 20)
    with pytest.raises(PeerProtocolError):
        framer.feed(header(pdu_type, 0xFFFFFFF0) + bytes(100))
    assert framer.buffered <= 106


def test_pdata_above_the_framer_cap_is_refused_and_at_the_cap_is_buffered():
    framer = PduFramer(1000)
    with pytest.raises(PeerProtocolError, match="P-DATA-TF length 1001"):
        framer.feed(header(4, 1001))
    framer = PduFramer(1000)
    assert framer.feed(header(4, 1000) + bytes(10)) == []  # legal: waits for the rest
    assert framer.buffered == 16


@pytest.mark.parametrize("length", [0, 1, 5])
def test_pdata_too_short_for_one_pdv(length):
    with pytest.raises(PeerProtocolError):
        PduFramer(1 << 20).feed(header(4, length))


def test_association_enforces_its_receive_cap():
    assoc = established(max_receive_pdu=4096)
    with pytest.raises(PeerProtocolError, match="P-DATA-TF"):
        assoc.receive(header(4, 4097))
    assert assoc.is_closed


@pytest.mark.parametrize("pdu_type", [3, 5, 6, 7])
@pytest.mark.parametrize("length", [0, 3, 5, 6, 100, 0xFFFFFFFF])
def test_fixed_size_pdus_must_be_exactly_four(pdu_type, length):
    framer = PduFramer(1 << 20)
    with pytest.raises(PeerProtocolError, match="must have length 4") as info:
        framer.feed(header(pdu_type, length) + bytes(min(length, 16)))
    assert info.value.abort_reason == 6
    with pytest.raises(PeerProtocolError):
        decode_pdu(header(pdu_type, length) + bytes(min(length, 16)))


@pytest.mark.parametrize("pdu_type", [1, 2])
def test_associate_above_64_kib_is_refused(pdu_type):
    framer = PduFramer(1 << 30)  # the P-DATA cap does not raise the A-ASSOCIATE one
    with pytest.raises(PeerProtocolError, match="A-ASSOCIATE length"):
        framer.feed(header(pdu_type, MAX_ASSOCIATE_LENGTH + 1))
    assert framer.buffered == 6
    assert PduFramer(1 << 30).feed(header(pdu_type, MAX_ASSOCIATE_LENGTH)) == []  # at the cap: waits


@pytest.mark.parametrize("pdu_type", [1, 2])
@pytest.mark.parametrize("length", [0, 10, 67])
def test_associate_shorter_than_its_fixed_part_is_refused(pdu_type, length):
    with pytest.raises(PeerProtocolError):
        PduFramer(1 << 20).feed(header(pdu_type, length))


def test_ac_of_exactly_64_kib_is_decoded():
    # Padding with an unknown item type (skipped by length) up to the cap.
    fill = MAX_ASSOCIATE_LENGTH - len(FIXED_PART) - len(APP_CONTEXT) - 4
    data = associate(2, APP_CONTEXT + item(0x7F, bytes(fill)))
    assert len(data) == 6 + MAX_ASSOCIATE_LENGTH
    (pdu,) = PduFramer(1 << 20).feed(data)
    assert isinstance(pdu, AAssociateAC)


def test_bytes_after_the_pdu_are_refused_by_decode_pdu():
    with pytest.raises(PeerProtocolError, match="after the PDU"):
        decode_pdu(GOLDEN_ECHO + b"\x00")


def test_truncated_pdus_are_refused_by_decode_pdu():
    for data in (PROBE_RQ, GOLDEN_AC, GOLDEN_ECHO):
        for n in (0, 1, 5, 6, len(data) - 1):
            with pytest.raises(PeerProtocolError):
                decode_pdu(data[:n])


# ---------------------------------------------------------------- items that overrun their parent


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(item(0x10, b"1.2.840.10008.3.1.1.1", length=0xFFFF), id="app-context-past-pdu"),
        pytest.param(APP_CONTEXT + H("21 00 0040 01 00 00 00") + item(0x40, b"1.2.840.10008.1.2"), id="pc-past-pdu"),
        pytest.param(
            APP_CONTEXT + item(0x21, H("01 00 00 00") + item(0x40, b"1.2.840.10008.1.2", length=0x30)),
            id="ts-past-pc",
        ),
        pytest.param(APP_CONTEXT + item(0x50, item(0x52, b"1.2.3", length=6)), id="impl-uid-past-user-info"),
        pytest.param(APP_CONTEXT + item(0x50, item(0x51, H("0000 4000 00"))), id="max-length-not-4"),
        pytest.param(APP_CONTEXT + item(0x50, item(0x51, H("0000"))), id="max-length-short"),
        pytest.param(APP_CONTEXT + item(0x50, item(0x54, H("0010") + b"1.2.3" + H("01 00"))), id="role-uid-past-item"),
        pytest.param(APP_CONTEXT + item(0x50, item(0x54, H("0005") + b"1.2.3" + H("01"))), id="role-missing-scp"),
        pytest.param(APP_CONTEXT + item(0x50, item(0x59, H("0020") + b"short")), id="identity-past-item"),
        pytest.param(APP_CONTEXT + H("21 00"), id="item-header-cut"),
        pytest.param(APP_CONTEXT + item(0x21, H("01 00")), id="pc-fixed-part-cut"),
        pytest.param(item(0x7F, b"x"), id="no-application-context"),
    ],
)
def test_ac_items_must_fit_their_parent(items):
    raises_both(associate(2, items))


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(APP_CONTEXT + item(0x20, H("01 000000") + item(0x30, b"1.2.840.10008.1.1")), id="no-ts"),
        pytest.param(APP_CONTEXT + item(0x20, H("01 000000") + item(0x40, b"1.2.840.10008.1.2")), id="no-as"),
        pytest.param(
            APP_CONTEXT + item(0x20, H("01 000000") + item(0x30, b"1.2.840.10008.1.1", length=0x40)), id="as-past-pc"
        ),
    ],
)
def test_rq_presentation_context_items_are_checked(items):
    raises_both(associate(1, items))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(H("00000010 01 03") + b"1234", id="pdv-past-pdu"),
        pytest.param(H("00000001 01"), id="pdv-length-1"),
        pytest.param(H("00000000") + H("0000"), id="pdv-length-0"),
        pytest.param(H("00000003 01 03 00") + H("0000"), id="second-pdv-header-cut"),
        pytest.param(H("FFFFFFFF 01 03"), id="pdv-length-huge"),
    ],
)
def test_pdv_items_must_fit_the_pdu(body):
    raises_both(header(4, len(body)) + body)


# ---------------------------------------------------------------- item counts


def test_too_many_items_in_an_ac():
    ok = associate(2, APP_CONTEXT + item(0x7F, b"") * (MAX_ITEMS - 1))
    assert isinstance(decode_pdu(ok), AAssociateAC)
    raises_both(associate(2, APP_CONTEXT + item(0x7F, b"") * MAX_ITEMS), match="more than 512 items")


def test_too_many_sub_items():
    many_ts = H("01 00 00 00") + item(0x40, b"1.2") * (MAX_ITEMS + 1)
    raises_both(associate(2, APP_CONTEXT + item(0x21, many_ts)), match="items")
    many_sub = item(0x5A, b"") * (MAX_ITEMS + 1)
    raises_both(associate(2, APP_CONTEXT + item(0x50, many_sub)), match="items")


def test_too_many_pdvs():
    pdv = H("00000002 01 00")  # the smallest PDV: 6 bytes, no data
    ok = pdv * MAX_ITEMS
    assert len(decode_pdu(header(4, len(ok)) + ok).pdvs) == MAX_ITEMS
    body = pdv * (MAX_ITEMS + 1)
    raises_both(header(4, len(body)) + body, match="too many PDV")


# ---------------------------------------------------------------- not DICOM at all


@pytest.mark.parametrize(
    "data, looks_like",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP"),
        (b"<!DOCTYPE html><html>", "HTTP"),
        (H("16 03 01 00 5A 02 00 00 56 03 03"), "TLS"),  # TLS handshake record (ServerHello)
        (H("15 03 03 00 02 02 28"), "TLS"),  # TLS alert: handshake failure
        (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH"),
        (b"220 ftp.example.org ready\r\n", "banner"),
        (H("00 00 00 00 00 00 00 00"), "not DICOM"),
        (H("08 00 00 00 00 04 00 00 00 00"), "not DICOM"),
    ],
)
def test_not_dicom_is_refused_and_named(data, looks_like):
    framer = PduFramer(1 << 20)
    with pytest.raises(PeerProtocolError, match=looks_like) as info:
        framer.feed(data)
    assert info.value.abort_reason == 1  # unrecognized PDU
    assert "not a DICOM PDU" in str(info.value)
    # Also through the state machine, which closes.
    assoc = Association(established().request_pdu, max_receive_pdu=1 << 20)
    assoc.request()
    with pytest.raises(PeerProtocolError, match=looks_like):
        assoc.receive(data)
    assert assoc.is_closed


def test_get_is_not_read_as_a_gigantic_length():
    # "GET " as a header is type 0x47 and a length of 0x20_2F_20_48 (fo-dicom #1678): refused by
    # type, whatever the length says, without buffering.
    framer = PduFramer(1 << 20)
    with pytest.raises(PeerProtocolError, match="HTTP"):
        framer.feed(b"GET / HTTP/1.0\r\n")
    assert framer.buffered <= 16


# ---------------------------------------------------------------- command sets


def test_command_set_bounds():
    good = encode_command(c_echo_rq(1))
    with pytest.raises(PeerProtocolError, match="bytes"):
        decode_command(good + bytes(MAX_COMMAND_LENGTH))
    with pytest.raises(PeerProtocolError, match="truncated"):
        decode_command(good + b"\x00\x00\x00\x09")
    with pytest.raises(PeerProtocolError, match="longer than the command set"):
        decode_command(good + H("0000 0009 FFFFFFFF"))
    with pytest.raises(PeerProtocolError, match="group"):
        decode_command(good + H("0800 5200 00000000"))
    with pytest.raises(PeerProtocolError, match="must be 2 bytes"):
        decode_command(H("0000 0001 04000000 30000000"))
    with pytest.raises(PeerProtocolError, match="without CommandField"):
        decode_command(H("0000 1001 02000000 0100"))
    with pytest.raises(PeerProtocolError, match="without CommandField"):
        decode_command(b"")


def test_command_set_too_long_across_fragments_is_refused_before_it_is_assembled():
    assoc = established()
    fragment = bytes(16000)
    with pytest.raises(PeerProtocolError, match="command set too long"):
        for _ in range(10):
            assoc.receive(encode_pdu(PDataTF((PDV(1, True, False, fragment),))))
    assert assoc.is_closed


def test_unknown_command_elements_are_skipped_including_free_text():
    # An ErrorComment (0000,0902) from the server may hold anything: skipped, not decoded.
    comment = b"patient DOE^JOHN not found \xff\xfe"
    data = encode_command(c_echo_rq(1))[12:] + H("0000 0209") + struct.pack("<I", len(comment)) + comment
    cmd = decode_command(data)
    assert cmd == c_echo_rq(1)
    assert "DOE" not in repr(cmd)


def test_non_ascii_in_text_fields_is_replaced_not_raised():
    bad_ae = associate(2, APP_CONTEXT + item(0x50, item(0x55, b"\xff\xfeVERSION")))
    ac = decode_pdu(bad_ae.replace(b"ANY-SCP ", b"\xc3\xa9NY-SC "))
    assert isinstance(ac, AAssociateAC)
    assert ac.user_info.implementation_version_name.endswith("VERSION")
    assert decode_command(H("0000 0200 02000000 FFFE 0000 0001 02000000 3000")).affected_sop_class_uid


def test_first_byte_is_judged_before_a_whole_header_arrives():
    """A peer that sends three bytes of SSH banner and stalls is refused at once, not timed out."""
    import pytest as _pytest

    from pacswatch.dicom.errors import PeerProtocolError as _Err
    from pacswatch.dicom.pdu import PduFramer as _Framer

    with _pytest.raises(_Err, match="SSH"):
        _Framer(16384).feed(b"SSH-")
    assert _Framer(16384).feed(b"\x02\x00") == []  # a DICOM type byte waits for the rest
