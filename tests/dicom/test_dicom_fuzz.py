"""Property and mutation fuzzing: whatever a peer sends, the core yields PDUs/events or raises
PeerProtocolError, and nothing else (docs/design.md: hostile peers are normal). No IndexError,
struct.error, UnicodeDecodeError, KeyError, MemoryError, LocalProtocolError or hang.

Inputs come in three flavours: arbitrary bytes (mostly rejected at the first header), structured
garbage (valid PDU and item headers around random contents, to get past the first checks and
into the item and command decoders), and mutations of the golden PDUs (flip, insert, delete).
"""

from __future__ import annotations

import struct

import pytest
from dicom_helpers import commands, established, probe_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dicom_golden import (
    GOLDEN_AC,
    GOLDEN_ABORT_PROVIDER,
    GOLDEN_CANCEL,
    GOLDEN_ECHO,
    GOLDEN_FIND_COMMAND,
    GOLDEN_FIND_IDENTIFIER,
    GOLDEN_FIND_PENDING_COMMAND,
    GOLDEN_RELEASE_RP,
    GOLDEN_RELEASE_RQ,
    GOLDEN_RJ,
    PROBE_RQ,
)

from pacswatch.dicom.association import (
    Aborted,
    Association,
    AssociationAccepted,
    AssociationRejected,
    DimseMessage,
    ReleaseConfirmed,
    ReleaseRequested,
    State,
)
from pacswatch.dicom import uids
from pacswatch.dicom.dimse import c_echo_rq, decode_command, encode_command
from pacswatch.dicom.errors import PeerProtocolError
from pacswatch.dicom.pdu import (
    PDU,
    AAssociateAC,
    PduFramer,
    PresentationContextAC,
    UserInformation,
    decode_pdu,
    encode_pdu,
)

SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
EVENT_TYPES = (AssociationAccepted, AssociationRejected, Aborted, ReleaseConfirmed, ReleaseRequested, DimseMessage)
PDU_TYPES = PDU.__args__  # type: ignore[attr-defined]

GOLDENS = [
    PROBE_RQ, GOLDEN_AC, GOLDEN_RJ, GOLDEN_RELEASE_RQ, GOLDEN_RELEASE_RP, GOLDEN_ABORT_PROVIDER,
    GOLDEN_ECHO, GOLDEN_FIND_COMMAND, GOLDEN_FIND_IDENTIFIER, GOLDEN_CANCEL,
]

# ---------------------------------------------------------------- input strategies


def _item(item_type: int, value: bytes, length: int | None = None) -> bytes:
    return bytes([item_type, 0]) + struct.pack(">H", len(value) if length is None else length) + value


_item_types = st.sampled_from([0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x58, 0x59, 0x00, 0xFF])


@st.composite
def items(draw, depth: int = 2) -> bytes:
    """A run of A-ASSOCIATE items, mostly well framed, with nested sub-items and wrong lengths."""
    out = []
    for _ in range(draw(st.integers(0, 5))):
        item_type = draw(_item_types)
        if depth and item_type in (0x20, 0x21, 0x50) and draw(st.booleans()):
            prefix = draw(st.binary(min_size=4, max_size=4)) if item_type != 0x50 else b""
            value = prefix + draw(items(depth=depth - 1))
        else:
            value = draw(st.binary(max_size=40))
        length = draw(st.none() | st.integers(0, 0xFFFF)) if draw(st.integers(0, 9)) == 0 else None
        out.append(_item(item_type, value, length))
    return b"".join(out)


@st.composite
def associate_like(draw) -> bytes:
    pdu_type = draw(st.sampled_from([1, 2]))
    body = draw(st.binary(min_size=68, max_size=68)) + draw(items())
    return bytes([pdu_type, 0]) + struct.pack(">I", len(body)) + body


@st.composite
def pdv_like(draw, context_ids=(1, 3, 5, 27)) -> bytes:
    """One PDV item with arbitrary contents and flags (wrong lengths now and then)."""
    data = draw(st.one_of(commands.map(encode_command), st.just(GOLDEN_FIND_PENDING_COMMAND), st.binary(max_size=40)))
    context = draw(st.sampled_from(context_ids) | st.integers(0, 255))
    mch = draw(st.sampled_from([0, 1, 2, 3]) | st.integers(0, 255))
    length = draw(st.sampled_from([len(data) + 2] * 8 + [0, 1, len(data) + 3, 0xFFFFFFFF]))
    return struct.pack(">I", length) + bytes([context, mch]) + data


@st.composite
def pdata_like(draw) -> bytes:
    body = b"".join(draw(st.lists(pdv_like(), min_size=1, max_size=4)))
    return b"\x04\x00" + struct.pack(">I", len(body)) + body


@st.composite
def message_stream(draw) -> bytes:
    """Well-formed DIMSE traffic (commands with and without data sets, fragmented over PDVs and
    PDUs, several PDVs per PDU) on accepted contexts, then at most one corruption: the DIMSE
    assembler's paths rather than the framer's."""
    pdvs: list[tuple[int, int, bytes]] = []  # (context, message control header, fragment)
    for _ in range(draw(st.integers(1, 4))):
        context = draw(st.sampled_from([1, 3, 5]))
        cmd = draw(commands)
        data_set = draw(st.binary(min_size=1, max_size=60)) if cmd.has_data_set else None
        size = draw(st.integers(1, 40))
        for payload, is_command in ((encode_command(cmd), True), (data_set, False)):
            if payload is None:
                continue
            for start in range(0, len(payload), size):
                last = start + size >= len(payload)
                pdvs.append((context, (1 if is_command else 0) | (2 if last else 0), payload[start : start + size]))
    corruption = draw(st.sampled_from(["none"] * 4 + ["context", "flags", "drop", "swap", "unproposed"]))
    if corruption != "none":
        i = draw(st.integers(0, len(pdvs) - 1))
        context, mch, fragment = pdvs[i]
        if corruption == "context":
            pdvs[i] = (draw(st.sampled_from([1, 3, 5, 7, 27])), mch, fragment)
        elif corruption == "flags":
            pdvs[i] = (context, mch ^ draw(st.sampled_from([1, 2, 3])), fragment)
        elif corruption == "drop":
            del pdvs[i]
        elif corruption == "swap" and len(pdvs) > 1:
            j = draw(st.integers(0, len(pdvs) - 1))
            pdvs[i], pdvs[j] = pdvs[j], pdvs[i]
        elif corruption == "unproposed":
            pdvs[i] = (draw(st.sampled_from([0, 2, 29, 255])), mch, fragment)
    out = []
    while pdvs:
        n = draw(st.integers(1, 3))
        group, pdvs = pdvs[:n], pdvs[n:]
        body = b"".join(struct.pack(">I", len(f) + 2) + bytes([c, m]) + f for c, m, f in group)
        out.append(b"\x04\x00" + struct.pack(">I", len(body)) + body)
    return b"".join(out)


@st.composite
def pdu_like(draw) -> bytes:
    """A PDU with a valid header and a body that may or may not make sense."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(associate_like())
    if choice == 1:
        return draw(pdata_like())
    pdu_type = draw(st.integers(1, 7))
    body = draw(st.binary(max_size=80))
    return bytes([pdu_type, draw(st.integers(0, 255))]) + struct.pack(">I", len(body)) + body


@st.composite
def mutated_golden(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(GOLDENS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


streams = st.one_of(
    st.binary(max_size=600),
    st.lists(pdu_like(), min_size=1, max_size=4).map(b"".join),
    st.lists(mutated_golden(), min_size=1, max_size=3).map(b"".join),
    st.tuples(st.sampled_from(GOLDENS), st.binary(max_size=40)).map(b"".join),
)

# ---------------------------------------------------------------- helpers


def framer_outcome(chunks: list[bytes]) -> tuple[list, bool]:
    """Feed chunks; the PDUs yielded and whether a PeerProtocolError ended it. Anything else fails."""
    framer = PduFramer(1 << 16)
    out: list = []
    fed = 0
    try:
        for chunk in chunks:
            fed += len(chunk)
            pdus = framer.feed(chunk)
            assert all(isinstance(p, PDU_TYPES) for p in pdus)
            out += pdus
            assert framer.buffered <= fed
    except PeerProtocolError as exc:
        assert isinstance(exc.abort_reason, int)
        return out, True
    return out, False


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(set(c for c in cuts if 0 < c < len(data)))
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def drive(assoc: Association, chunks: list[bytes]) -> None:
    """Feed chunks to an association until it closes; only events or PeerProtocolError."""
    for chunk in chunks:
        if assoc.state in (State.CLOSED, State.IDLE):
            return
        try:
            events = assoc.receive(chunk)
        except PeerProtocolError as exc:
            assert assoc.state is State.CLOSED
            assert exc.abort_reason in (0, 1, 2, 4, 5, 6)
            return
        assert all(isinstance(e, EVENT_TYPES) for e in events)
        for event in events:
            if isinstance(event, (Aborted, AssociationRejected, ReleaseConfirmed)):
                assert assoc.is_closed
            if isinstance(event, DimseMessage):
                assert event.data_set_length >= 0


def fresh(state: str) -> Association:
    if state == "Sta5":
        assoc = Association(probe_request(), max_receive_pdu=1 << 16)
        assoc.request()
        return assoc
    assoc = established(accept_ids={1, 3, 5}, max_receive_pdu=1 << 16)
    if state == "Sta7":
        assoc.release()
    return assoc


# ---------------------------------------------------------------- the framer


@SETTINGS
@given(streams, st.lists(st.integers(0, 700), max_size=12))
def test_framer_whole_chunked_and_byte_by_byte_agree(data, cuts):
    whole, whole_failed = framer_outcome([data])
    pieces, pieces_failed = framer_outcome(chunked(data, cuts))
    assert pieces_failed == whole_failed
    if not whole_failed:
        assert pieces == whole
    else:
        # Fed whole, the PDUs before the bad one were lost with the exception; fed in pieces,
        # some came out first. Those are a prefix of what a clean stream would give.
        assert all(isinstance(p, PDU_TYPES) for p in pieces)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams)
def test_framer_byte_by_byte(data):
    whole, whole_failed = framer_outcome([data])
    single, single_failed = framer_outcome([data[i : i + 1] for i in range(len(data))])
    assert single_failed == whole_failed
    if not whole_failed:
        assert single == whole


# ---------------------------------------------------------------- the decoders


@SETTINGS
@given(streams)
def test_decode_pdu_only_pdus_or_peer_errors(data):
    try:
        pdu = decode_pdu(data)
    except PeerProtocolError:
        return
    assert isinstance(pdu, PDU_TYPES)


@SETTINGS
@given(st.one_of(
    st.binary(max_size=300),
    commands.map(encode_command),
    st.tuples(commands.map(encode_command), st.binary(max_size=20)).map(b"".join),
    st.lists(
        st.tuples(st.sampled_from([0x0000, 0x0002, 0x0100, 0x0110, 0x0120, 0x0700, 0x0800, 0x0900, 0x1000]),
                  st.binary(max_size=30), st.none() | st.integers(0, 0xFFFFFFFF)),
        max_size=8,
    ).map(lambda els: b"".join(
        struct.pack("<HHI", 0, e, len(v) if n is None else n) + v for e, v, n in els
    )),
))
def test_decode_command_only_commands_or_peer_errors(data):
    try:
        cmd = decode_command(data)
    except PeerProtocolError:
        return
    assert isinstance(cmd.command_field, int)


@SETTINGS
@given(mutated_golden())
def test_mutated_goldens(data):
    try:
        decode_pdu(data)
    except PeerProtocolError:
        pass
    framer_outcome([data])
    if data[:1] == b"\x04" and len(data) > 12:
        try:
            decode_command(data[12:])
        except PeerProtocolError:
            pass


# ---------------------------------------------------------------- the state machine


@pytest.mark.parametrize("state", ["Sta5", "Sta6", "Sta7"])
@SETTINGS
@given(data=streams, cuts=st.lists(st.integers(0, 700), max_size=6))
def test_association_receive_only_events_or_peer_errors(state, data, cuts):
    drive(fresh(state), chunked(data, cuts))


@pytest.mark.parametrize("state", ["Sta6", "Sta7"])
@settings(SETTINGS, max_examples=300)
@given(data=st.one_of(message_stream(), st.lists(pdata_like(), min_size=1, max_size=4).map(b"".join)),
       cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_association_structured_pdata(state, data, cuts):
    # P-DATA with real command sets, fragments and wrong flags on accepted, rejected and
    # unproposed contexts: the DIMSE assembler's paths, not just the framer's.
    drive(fresh(state), chunked(data, cuts))


@st.composite
def ac_variants(draw) -> bytes:
    """A-ASSOCIATE-ACs answering proposed and unproposed contexts with any result and syntax."""
    contexts = tuple(
        PresentationContextAC(i, draw(st.sampled_from([0, 0, 1, 2, 3, 4, 9])),
                              draw(st.sampled_from([uids.IMPLICIT_VR_LE, uids.EXPLICIT_VR_LE, None])))
        for i in draw(st.lists(st.sampled_from([1, 3, 5, 25, 27, 29, 101, 255]), max_size=6, unique=True))
    )
    max_length = draw(st.sampled_from([None, 0, 1, 7, 8, 9, 100, 16382, 0xFFFFFFFF]))
    ac = AAssociateAC("ANY-SCP", "PACSWATCH", contexts, UserInformation(max_length, "1.2.3"))
    return encode_pdu(ac)


@settings(SETTINGS, max_examples=300)
@given(ac_variants(), st.one_of(st.just(b""), message_stream(), st.binary(max_size=40)))
def test_association_accept_variants_then_traffic(ac, traffic):
    assoc = fresh("Sta5")
    drive(assoc, [ac + traffic])
    if assoc.state is State.ESTABLISHED:
        # Whatever the AC said, sending on what it accepted gives bytes or a peer error.
        for context_id in assoc.accepted:
            try:
                assoc.send(context_id, c_echo_rq(1), b"x" * 50)
            except PeerProtocolError:
                pass


@SETTINGS
@given(mutated_golden(), st.booleans())
def test_association_mutated_goldens(data, after_ac):
    if after_ac:
        drive(fresh("Sta6"), [data])
    else:
        drive(fresh("Sta5"), [data])
        # A mutated AC is the most interesting input in Sta5: the accept path's checks.
        drive(fresh("Sta5"), [data if data[:1] == b"\x02" else GOLDEN_AC[:6] + data[6:]])
