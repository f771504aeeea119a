"""Shared pieces for the DICOM core tests: the probe's request, an in-memory acceptor, and
hypothesis strategies for valid PDUs and command sets.

The in-memory peer follows h11's tests/helpers.py: the state machine under test talks to a small
acceptor that decodes what the requestor sends and builds what an SCP would answer, all in
memory, no sockets, no clock.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from pacswatch.dicom import uids
from pacswatch.dicom.association import Association, AssociationAccepted
from pacswatch.dicom.dimse import Command, decode_command, encode_command, fragment_message
from pacswatch.dicom.pdu import (
    PDU,
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    PduFramer,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
    encode_pdu,
)
from pacswatch.identity import Identity
from pacswatch.probes.dicom.request import RequestTemplate

# A fixed control UID (the probe draws a random one per scan). Odd length on purpose:
# UIDs in items travel unpadded, so its item length is odd too.
CONTROL_UID = "2.25.12345"
PACSWATCH_UID = "2.25.204395695027342872693609202859394366001"
PACSWATCH_VERSION = "PACSWATCH_010"
# The control context is the 14th proposed: PC-ID 27.
CONTROL_CONTEXT_ID = 27
VERIFICATION_ID = 1
STUDY_FIND_ID = 3
PATIENT_FIND_ID = 5


def probe_request(called_ae: str = "ANY-SCP", max_length: int = 16384) -> AAssociateRQ:
    """The A-ASSOCIATE-RQ exactly as probes/dicom/probe.py builds it, with fixed identity values."""
    return probe_template(max_length).build(called_ae)[0]


def probe_template(max_length: int = 16384) -> RequestTemplate:
    identity = Identity(calling_ae="PACSWATCH", implementation_class_uid=PACSWATCH_UID,
                        implementation_version_name=PACSWATCH_VERSION)
    return RequestTemplate(identity, max_length, CONTROL_UID)


def accept(
    rq: AAssociateRQ,
    accept_ids: set[int] | None = None,
    max_length: int | None = 16382,
    extra: tuple[PresentationContextAC, ...] = (),
) -> AAssociateAC:
    """An AC answering every proposed context: accepted (first transfer syntax) when its ID is
    in accept_ids (all by default), else rejected with 3 (abstract syntax not supported)."""
    contexts = []
    for ctx in rq.contexts:
        if accept_ids is None or ctx.id in accept_ids:
            contexts.append(PresentationContextAC(ctx.id, 0, ctx.transfer_syntaxes[0]))
        else:
            contexts.append(PresentationContextAC(ctx.id, 3, None))
    return AAssociateAC(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=tuple(contexts) + extra,
        user_info=UserInformation(
            max_length=max_length,
            implementation_class_uid="1.2.826.0.1.3680043.9.3811.3.0.4",
            implementation_version_name="PYNETDICOM_304",
        ),
    )


def established(
    accept_ids: set[int] | None = None, max_length: int | None = 16382, max_receive_pdu: int = 1 << 20
) -> Association:
    """An association in Sta6, driven there through its public API."""
    rq = probe_request()
    assoc = Association(rq, max_receive_pdu=max_receive_pdu)
    assoc.request()
    events = assoc.receive(encode_pdu(accept(rq, accept_ids, max_length)))
    assert len(events) == 1 and isinstance(events[0], AssociationAccepted)
    return assoc


def response(context_id: int, command: Command, data_set: bytes | None = None, max_pdu: int = 0) -> bytes:
    """What an SCP sends for one message: command PDU(s), then data set PDU(s)."""
    return b"".join(
        encode_pdu(p) for p in fragment_message(context_id, encode_command(command), data_set, max_pdu)
    )


def pdata(*pdvs: PDV) -> bytes:
    return encode_pdu(PDataTF(tuple(pdvs)))


class Peer:
    """The acceptor's view of the bytes the requestor sends."""

    def __init__(self, max_pdu: int = 1 << 20) -> None:
        self.framer = PduFramer(max_pdu)
        self._command: list[bytes] = []
        self._data: list[bytes] = []
        self._pending: tuple[int, Command] | None = None

    def read(self, data: bytes) -> list[PDU]:
        return self.framer.feed(data)

    def messages(self, data: bytes) -> list[tuple[int, Command, bytes | None]]:
        """Assemble complete DIMSE messages (context, command, data set) from P-DATA PDUs."""
        out = []
        for pdu in self.read(data):
            assert isinstance(pdu, PDataTF), pdu
            for pdv in pdu.pdvs:
                if pdv.is_command:
                    self._command.append(pdv.data)
                    if pdv.is_last:
                        cmd = decode_command(b"".join(self._command))
                        self._command = []
                        if cmd.has_data_set:
                            self._pending = (pdv.context_id, cmd)
                        else:
                            out.append((pdv.context_id, cmd, None))
                else:
                    self._data.append(pdv.data)
                    if pdv.is_last:
                        assert self._pending is not None
                        ctx, cmd = self._pending
                        out.append((ctx, cmd, b"".join(self._data)))
                        self._data = []
                        self._pending = None
        return out


# ---------------------------------------------------------------- hypothesis strategies

_AE_ALPHABET = string.ascii_uppercase + string.digits + "_-. "
# AE titles: 1-16 characters; leading and trailing spaces are not significant (PS3.5 6.2), so a
# value that round-trips has none.
ae_titles = st.text(_AE_ALPHABET, min_size=1, max_size=16).map(str.strip).filter(bool)

# UIDs: components without leading zeros (PS3.5 9.1), at most 64 characters. Mostly real ones
# (cheap to draw), some made up; 8 components of at most 7 characters stay within 64.
_REAL_UIDS = (
    uids.VERIFICATION, uids.STUDY_ROOT_FIND, uids.PATIENT_ROOT_FIND, uids.MODALITY_WORKLIST_FIND,
    uids.IMPLICIT_VR_LE, uids.EXPLICIT_VR_LE, uids.CT_IMAGE_STORAGE, uids.APPLICATION_CONTEXT,
    "2.25.204395695027342872693609202859394366001", "1.2.826.0.1.3680043.9.3811.3.0.4",
)
_uid_component = st.integers(0, 9_999_999).map(str)
uid_strategy = st.one_of(
    st.sampled_from(_REAL_UIDS),
    st.lists(_uid_component, min_size=2, max_size=8).map(".".join),
)
# Implementation version name: 1-16 characters of the default character repertoire.
version_names = st.text(string.ascii_uppercase + string.digits + "_.-", min_size=1, max_size=16)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
odd_ids = st.integers(0, 127).map(lambda n: 2 * n + 1)

# Sub-item types the codec keeps as raw (type, value) pairs: everything but 0x51, 0x52, 0x54,
# 0x55 and 0x59, which it interprets.
_other_sub_types = st.sampled_from([0x53, 0x56, 0x57, 0x58, 0x5A, 0x5B, 0x60, 0x7F, 0xFF])

roles = st.builds(RoleSelection, uid_strategy, st.integers(0, 1), st.integers(0, 1))

user_infos = st.builds(
    UserInformation,
    max_length=st.none() | u32,
    implementation_class_uid=st.none() | uid_strategy,
    implementation_version_name=st.none() | version_names,
    roles=st.lists(roles, max_size=3).map(tuple),
    user_identity_response=st.none() | st.binary(max_size=64),
    other=st.lists(st.tuples(_other_sub_types, st.binary(max_size=32)), max_size=3).map(tuple),
)


@st.composite
def context_ids(draw, min_size: int = 0, max_size: int = 5) -> list[int]:
    return draw(st.lists(odd_ids, min_size=min_size, max_size=max_size, unique=True))


@st.composite
def associate_rqs(draw) -> AAssociateRQ:
    ids = draw(context_ids())
    contexts = tuple(
        PresentationContextRQ(i, draw(uid_strategy), tuple(draw(st.lists(uid_strategy, min_size=1, max_size=3))))
        for i in ids
    )
    return AAssociateRQ(
        called_ae=draw(ae_titles),
        calling_ae=draw(ae_titles),
        contexts=contexts,
        user_info=draw(user_infos),
        application_context=draw(st.just(uids.APPLICATION_CONTEXT) | uid_strategy),
        protocol_version=draw(st.just(1) | u16),
    )


@st.composite
def associate_acs(draw) -> AAssociateAC:
    ids = draw(context_ids())
    contexts = tuple(PresentationContextAC(i, draw(u8), draw(st.none() | uid_strategy)) for i in ids)
    return AAssociateAC(
        called_ae=draw(ae_titles),
        calling_ae=draw(ae_titles),
        contexts=contexts,
        user_info=draw(user_infos),
        application_context=draw(st.just(uids.APPLICATION_CONTEXT) | uid_strategy),
        protocol_version=draw(st.just(1) | u16),
    )


pdvs = st.builds(PDV, u8, st.booleans(), st.booleans(), st.binary(max_size=200))
pdata_tfs = st.builds(PDataTF, st.lists(pdvs, min_size=1, max_size=6).map(tuple))

all_pdus = st.one_of(
    associate_rqs(),
    associate_acs(),
    st.builds(AAssociateRJ, u8, u8, u8),
    pdata_tfs,
    st.just(AReleaseRQ()),
    st.just(AReleaseRP()),
    st.builds(AAbort, u8, u8),
)

commands = st.builds(
    Command,
    command_field=u16,
    message_id=st.none() | u16,
    message_id_being_responded_to=st.none() | u16,
    affected_sop_class_uid=st.none() | uid_strategy,
    priority=st.none() | u16,
    data_set_type=u16,
    status=st.none() | u16,
)
