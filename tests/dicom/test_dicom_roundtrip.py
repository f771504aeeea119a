"""Round trips: encode → decode gives the same frozen value, for every PDU type and for command
sets, over hypothesis-generated valid values; and the framer cuts any concatenation of valid
PDUs back into the same PDUs however the stream is chunked."""

from __future__ import annotations

from dicom_helpers import all_pdus, associate_acs, associate_rqs, commands, pdata_tfs, user_infos
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacswatch.dicom.dimse import decode_command, encode_command
from pacswatch.dicom.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PduFramer,
    UserInformation,
    decode_pdu,
    encode_pdu,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _roundtrip(pdu):
    encoded = encode_pdu(pdu)
    assert decode_pdu(encoded) == pdu
    # Canonical: decoding and re-encoding reproduces the bytes.
    assert encode_pdu(decode_pdu(encoded)) == encoded
    # The header's length is the body's.
    assert int.from_bytes(encoded[2:6], "big") == len(encoded) - 6 and encoded[0] == pdu.pdu_type


@SETTINGS
@given(associate_rqs())
def test_associate_rq_roundtrip(pdu):
    _roundtrip(pdu)


@SETTINGS
@given(associate_acs())
def test_associate_ac_roundtrip(pdu):
    _roundtrip(pdu)


@SETTINGS
@given(user_infos)
def test_user_information_with_and_without_optional_sub_items(info):
    # Each optional sub-item present or absent independently, in an RQ and an AC.
    _roundtrip(AAssociateRQ("CALLED", "CALLING", (), info))
    _roundtrip(AAssociateAC("CALLED", "CALLING", (), info))


def test_empty_user_information_roundtrip():
    _roundtrip(AAssociateRQ("A", "B", (), UserInformation()))


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
def test_rj_roundtrip(result, source, reason):
    _roundtrip(AAssociateRJ(result, source, reason))


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255))
def test_abort_roundtrip(source, reason):
    _roundtrip(AAbort(source, reason))


def test_release_roundtrip():
    _roundtrip(AReleaseRQ())
    _roundtrip(AReleaseRP())


@SETTINGS
@given(pdata_tfs)
def test_pdata_roundtrip(pdu):
    _roundtrip(pdu)


@SETTINGS
@given(commands)
def test_command_roundtrip(cmd):
    encoded = encode_command(cmd)
    assert decode_command(encoded) == cmd
    assert len(encoded) % 2 == 0  # every element even, so the whole set is
    assert int.from_bytes(encoded[8:12], "little") == len(encoded) - 12  # CommandGroupLength


@SETTINGS
@given(st.lists(all_pdus, min_size=1, max_size=5), st.data())
def test_framer_recovers_any_stream_of_valid_pdus_in_any_chunking(pdus, data):
    stream = b"".join(encode_pdu(p) for p in pdus)
    whole = PduFramer(1 << 20)
    assert whole.feed(stream) == pdus
    assert whole.buffered == 0

    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = PduFramer(1 << 20)
    out = []
    for start, end in zip([0] + cuts, cuts + [len(stream)]):
        out += framer.feed(stream[start:end])
    assert out == pdus and framer.buffered == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(all_pdus, min_size=1, max_size=3))
def test_framer_byte_by_byte(pdus):
    stream = b"".join(encode_pdu(p) for p in pdus)
    framer = PduFramer(1 << 20)
    out = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
        assert framer.buffered <= max(len(encode_pdu(p)) for p in pdus)
    assert out == pdus
