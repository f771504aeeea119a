"""The codec against an independent implementation: pynetdicom's PDU classes and DIMSE messages
(and pydicom's implicit VR codec for command sets). Our encoder's bytes decode in pynetdicom to
the same fields, and pynetdicom's bytes decode in ours to the same fields. Self round trips can
agree on a wrong layout; an independent decoder cannot.

No network: pynetdicom is only used as a codec here (tests/interop runs it as a server).
"""

from __future__ import annotations

from io import BytesIO

import pytest
from dicom_helpers import (
    Peer,
    ae_titles,
    context_ids,
    established,
    probe_request,
    uid_strategy,
    u8,
    u16,
    version_names,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom import dimse_messages as DM
from pynetdicom import dimse_primitives as DP
from pynetdicom import pdu as NP
from pynetdicom import pdu_primitives as PP
from pynetdicom.dsutils import decode as ds_decode
from pynetdicom.dsutils import encode as ds_encode
from pynetdicom.presentation import PresentationContext

from pacswatch.dicom import uids
from pacswatch.dicom.association import DimseMessage
from pacswatch.dicom.dimse import (
    NO_DATA_SET,
    Command,
    CommandField,
    c_cancel_rq,
    c_echo_rq,
    c_find_rq,
    decode_command,
    encode_command,
    fragment_message,
)
from pacswatch.dicom.identifiers import study_query
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
    RoleSelection,
    UserInformation,
    decode_pdu,
    encode_pdu,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- conversions to/from pynetdicom


def _their_user_info(info: UserInformation) -> list:
    items = []
    if info.max_length is not None:
        item = PP.MaximumLengthNotification()
        item.maximum_length_received = info.max_length
        items.append(item)
    if info.implementation_class_uid is not None:
        item = PP.ImplementationClassUIDNotification()
        item.implementation_class_uid = info.implementation_class_uid
        items.append(item)
    if info.implementation_version_name is not None:
        item = PP.ImplementationVersionNameNotification()
        item.implementation_version_name = info.implementation_version_name
        items.append(item)
    for role in info.roles:
        item = PP.SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = role.sop_class_uid
        item.scu_role = bool(role.scu_role)
        item.scp_role = bool(role.scp_role)
        items.append(item)
    return items


def _our_view_of_their_user_info(item) -> UserInformation:
    roles = tuple(
        RoleSelection(str(uid), int(sub.scu_role), int(sub.scp_role)) for uid, sub in item.role_selection.items()
    )
    identity = item.user_identity
    return UserInformation(
        max_length=item.maximum_length,
        implementation_class_uid=None if item.implementation_class_uid is None else str(item.implementation_class_uid),
        implementation_version_name=(
            None if item.implementation_version_name is None else _str(item.implementation_version_name)
        ),
        roles=roles,
        user_identity_response=None if identity is None else identity.server_response,
    )


def _str(value) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def their_rq(pdu: AAssociateRQ) -> bytes:
    primitive = PP.A_ASSOCIATE()
    primitive.application_context_name = pdu.application_context
    primitive.called_ae_title = pdu.called_ae
    primitive.calling_ae_title = pdu.calling_ae
    contexts = []
    for ctx in pdu.contexts:
        cx = PresentationContext()
        cx.context_id = ctx.id
        cx.abstract_syntax = ctx.abstract_syntax
        cx.transfer_syntax = list(ctx.transfer_syntaxes)
        contexts.append(cx)
    primitive.presentation_context_definition_list = contexts
    primitive.user_information = _their_user_info(pdu.user_info)
    rq = NP.A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return rq.encode()


def their_ac(pdu: AAssociateAC) -> bytes:
    primitive = PP.A_ASSOCIATE()
    primitive.application_context_name = pdu.application_context
    primitive.called_ae_title = pdu.called_ae
    primitive.calling_ae_title = pdu.calling_ae
    primitive.result = 0
    contexts = []
    for ctx in pdu.contexts:
        cx = PresentationContext()
        cx.context_id = ctx.id
        cx.abstract_syntax = "1.2.3"  # not sent in an AC
        cx.transfer_syntax = [ctx.transfer_syntax]
        cx.result = ctx.result
        contexts.append(cx)
    primitive.presentation_context_definition_results_list = contexts
    primitive.user_information = _their_user_info(pdu.user_info)
    ac = NP.A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    return ac.encode()


def decode_their_rq(data: bytes) -> AAssociateRQ:
    rq = NP.A_ASSOCIATE_RQ()
    rq.decode(data)
    return AAssociateRQ(
        called_ae=_str(rq.called_ae_title),
        calling_ae=_str(rq.calling_ae_title),
        contexts=tuple(
            PresentationContextRQ(pc.context_id, str(pc.abstract_syntax), tuple(str(t) for t in pc.transfer_syntax))
            for pc in rq.presentation_context
        ),
        user_info=_our_view_of_their_user_info(rq.user_information),
        application_context=str(rq.application_context_name),
        protocol_version=rq.protocol_version,
    )


def decode_their_ac(data: bytes) -> AAssociateAC:
    ac = NP.A_ASSOCIATE_AC()
    ac.decode(data)
    contexts = []
    for item in ac.variable_items:
        if item.item_type == 0x21:
            ts = item.transfer_syntax
            contexts.append(PresentationContextAC(item.presentation_context_id, item.result_reason,
                                                  str(ts) if ts else None))
    return AAssociateAC(
        called_ae=_str(ac.called_ae_title),
        calling_ae=_str(ac.calling_ae_title),
        contexts=tuple(contexts),
        user_info=_our_view_of_their_user_info(ac.user_information),
        application_context=str(ac.application_context_name),
        protocol_version=ac.protocol_version,
    )


# ---------------------------------------------------------------- strategies pynetdicom can take

_unique_roles = st.lists(
    # pynetdicom refuses a role selection with both roles 0 (its primitive logs and drops it).
    st.builds(RoleSelection, uid_strategy, st.integers(0, 1), st.integers(0, 1)).filter(
        lambda r: r.scu_role or r.scp_role
    ),
    max_size=3,
    unique_by=lambda r: r.sop_class_uid,
).map(tuple)

# Only the sub-items both sides interpret (pynetdicom parses 0x53/0x56/0x57/0x58 itself, so
# random bytes there are not comparable).
interop_user_infos = st.builds(
    UserInformation,
    max_length=st.integers(0, 0xFFFFFFFF),
    implementation_class_uid=uid_strategy,
    implementation_version_name=st.none() | version_names,
    roles=_unique_roles,
)


@st.composite
def interop_rqs(draw) -> AAssociateRQ:
    return AAssociateRQ(
        called_ae=draw(ae_titles),
        calling_ae=draw(ae_titles),
        contexts=tuple(
            # pynetdicom drops repeated transfer syntaxes in a context; ours keeps them.
            PresentationContextRQ(
                i, draw(uid_strategy), tuple(draw(st.lists(uid_strategy, min_size=1, max_size=3, unique=True)))
            )
            for i in draw(context_ids(min_size=1))
        ),
        user_info=draw(interop_user_infos),
    )


@st.composite
def interop_acs(draw) -> AAssociateAC:
    return AAssociateAC(
        called_ae=draw(ae_titles),
        calling_ae=draw(ae_titles),
        contexts=tuple(
            PresentationContextAC(i, draw(st.integers(0, 4)), draw(uid_strategy))
            for i in draw(context_ids(min_size=1))
        ),
        user_info=draw(interop_user_infos),
    )


# ---------------------------------------------------------------- A-ASSOCIATE


def test_probe_rq_decodes_in_pynetdicom_and_reencodes_to_the_same_bytes():
    ours = encode_pdu(probe_request())
    theirs = NP.A_ASSOCIATE_RQ()
    theirs.decode(ours)
    assert decode_their_rq(ours) == probe_request()
    assert theirs.encode() == ours  # byte for byte, as pynetdicom would have sent it


def test_golden_ac_with_an_empty_transfer_syntax_on_rejection_decodes_in_pynetdicom():
    # We send an empty transfer syntax sub-item for a rejected context (not significant there,
    # PS3.8 9.3.3.2); pynetdicom reads it.
    from test_dicom_golden import GOLDEN_AC, GOLDEN_AC_PDU

    assert decode_their_ac(GOLDEN_AC) == GOLDEN_AC_PDU


@SETTINGS
@given(interop_rqs())
def test_rq_ours_to_theirs(rq):
    assert decode_their_rq(encode_pdu(rq)) == rq


@SETTINGS
@given(interop_rqs())
def test_rq_theirs_to_ours(rq):
    assert decode_pdu(their_rq(rq)) == rq


@SETTINGS
@given(interop_acs())
def test_ac_ours_to_theirs(ac):
    assert decode_their_ac(encode_pdu(ac)) == ac


@SETTINGS
@given(interop_acs())
def test_ac_theirs_to_ours(ac):
    assert decode_pdu(their_ac(ac)) == ac


def test_ac_with_user_identity_response_both_ways():
    ours = AAssociateAC(
        "ANY-SCP", "PACSWATCH", (PresentationContextAC(1, 0, uids.IMPLICIT_VR_LE),),
        UserInformation(16382, "1.2.3.4", user_identity_response=b"token-from-server"),
    )
    assert decode_their_ac(encode_pdu(ours)) == ours

    primitive = PP.A_ASSOCIATE()
    primitive.application_context_name = uids.APPLICATION_CONTEXT
    primitive.called_ae_title = "ANY-SCP"
    primitive.calling_ae_title = "PACSWATCH"
    primitive.result = 0
    cx = PresentationContext()
    cx.context_id, cx.abstract_syntax, cx.transfer_syntax, cx.result = 1, "1.2.3", [uids.IMPLICIT_VR_LE], 0
    primitive.presentation_context_definition_results_list = [cx]
    identity = PP.UserIdentityNegotiation()
    identity.server_response = b"token-from-server"
    primitive.user_information = _their_user_info(UserInformation(16382, "1.2.3.4")) + [identity]
    ac = NP.A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    assert decode_pdu(ac.encode()) == ours


# ---------------------------------------------------------------- fixed-size PDUs


# The (result, source, reason) triples PS3.8 9.3.4 defines; pynetdicom's primitive refuses others.
@pytest.mark.parametrize(
    "result, source, reason",
    [(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 7), (2, 1, 7), (1, 2, 1), (1, 2, 2), (2, 3, 1), (2, 3, 2)],
)
def test_rj_theirs_to_ours(result, source, reason):
    primitive = PP.A_ASSOCIATE()
    primitive.result, primitive.result_source, primitive.diagnostic = result, source, reason
    theirs = NP.A_ASSOCIATE_RJ()
    theirs.from_primitive(primitive)
    assert decode_pdu(theirs.encode()) == AAssociateRJ(result, source, reason)
    assert theirs.encode() == encode_pdu(AAssociateRJ(result, source, reason))


@SETTINGS
@given(u8, u8, u8)
def test_rj_ours_to_theirs(result, source, reason):
    decoded = NP.A_ASSOCIATE_RJ()
    decoded.decode(encode_pdu(AAssociateRJ(result, source, reason)))
    assert (decoded.result, decoded.source, decoded.reason_diagnostic) == (result, source, reason)


@pytest.mark.parametrize("reason", [0, 1, 2, 4, 5, 6])
def test_provider_abort_both_ways(reason):
    primitive = PP.A_P_ABORT()
    primitive.provider_reason = reason
    theirs = NP.A_ABORT_RQ()
    theirs.from_primitive(primitive)
    assert decode_pdu(theirs.encode()) == AAbort(2, reason)
    decoded = NP.A_ABORT_RQ()
    decoded.decode(encode_pdu(AAbort(2, reason)))
    assert (decoded.source, decoded.reason_diagnostic) == (2, reason)


def test_user_abort_and_release_both_ways():
    primitive = PP.A_ABORT()
    primitive.abort_source = 0
    theirs = NP.A_ABORT_RQ()
    theirs.from_primitive(primitive)
    assert decode_pdu(theirs.encode()) == AAbort(0, 0)
    assert theirs.encode() == encode_pdu(AAbort(0, 0))

    release = PP.A_RELEASE()
    rq = NP.A_RELEASE_RQ()
    rq.from_primitive(release)
    assert rq.encode() == encode_pdu(AReleaseRQ())
    assert decode_pdu(rq.encode()) == AReleaseRQ()

    release.result = "affirmative"
    rp = NP.A_RELEASE_RP()
    rp.from_primitive(release)
    assert rp.encode() == encode_pdu(AReleaseRP())
    assert decode_pdu(rp.encode()) == AReleaseRP()


# ---------------------------------------------------------------- P-DATA-TF

# pynetdicom keeps the message control header as the first byte of the value; only bits 0-1 are
# significant (PS3.8 E.2) and those are what we compare.
_pdvs = st.lists(st.tuples(u8.filter(lambda i: i % 2), st.integers(0, 3), st.binary(max_size=100)),
                 min_size=1, max_size=5)


@SETTINGS
@given(_pdvs)
def test_pdata_both_ways(items):
    primitive = PP.P_DATA()
    primitive.presentation_data_value_list = [[ctx, bytes([mch]) + data] for ctx, mch, data in items]
    theirs = NP.P_DATA_TF()
    theirs.from_primitive(primitive)
    expected = PDataTF(tuple(PDV(ctx, bool(mch & 1), bool(mch & 2), data) for ctx, mch, data in items))
    assert decode_pdu(theirs.encode()) == expected
    assert theirs.encode() == encode_pdu(expected)

    decoded = NP.P_DATA_TF()
    decoded.decode(encode_pdu(expected))
    assert [(i.presentation_context_id, i.presentation_data_value) for i in decoded.presentation_data_value_items] == [
        (ctx, bytes([mch]) + data) for ctx, mch, data in items
    ]


# ---------------------------------------------------------------- DIMSE command sets


def _their_command_set(message_cls, primitive) -> bytes:
    message = message_cls()
    message.primitive_to_message(primitive)
    return ds_encode(message.command_set, True, True)


def test_echo_and_cancel_commands_are_byte_identical_to_pynetdicoms():
    echo = DP.C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = uids.VERIFICATION
    assert _their_command_set(DM.C_ECHO_RQ, echo) == encode_command(c_echo_rq(1))

    cancel = DP.C_CANCEL()
    cancel.MessageIDBeingRespondedTo = 7
    assert _their_command_set(DM.C_CANCEL_RQ, cancel) == encode_command(c_cancel_rq(7))


def test_their_find_rq_and_responses_decode_in_ours():
    find = DP.C_FIND()
    find.MessageID = 3
    find.AffectedSOPClassUID = uids.STUDY_ROOT_FIND
    find.Priority = 2
    find.Identifier = BytesIO(study_query(""))
    cmd = decode_command(_their_command_set(DM.C_FIND_RQ, find))
    assert cmd.command_field == CommandField.C_FIND_RQ and cmd.message_id == 3 and cmd.priority == 2
    assert cmd.affected_sop_class_uid == uids.STUDY_ROOT_FIND and cmd.has_data_set

    for status in (0xFF00, 0xFF01, 0x0000, 0xFE00, 0xA700, 0xC001, 0x0124):
        rsp = DP.C_FIND()
        rsp.MessageIDBeingRespondedTo = 3
        rsp.AffectedSOPClassUID = uids.STUDY_ROOT_FIND
        rsp.Status = status
        cmd = decode_command(_their_command_set(DM.C_FIND_RSP, rsp))
        assert (cmd.command_field, cmd.message_id_being_responded_to, cmd.status) == (0x8020, 3, status)
        assert not cmd.has_data_set

    echo_rsp = DP.C_ECHO()
    echo_rsp.MessageIDBeingRespondedTo = 1
    echo_rsp.AffectedSOPClassUID = uids.VERIFICATION
    echo_rsp.Status = 0x0000
    assert decode_command(_their_command_set(DM.C_ECHO_RSP, echo_rsp)) == Command(
        CommandField.C_ECHO_RSP, message_id_being_responded_to=1, affected_sop_class_uid=uids.VERIFICATION,
        status=0,
    )


_commands_pydicom_can_read = st.builds(
    Command,
    command_field=u16,
    message_id=st.none() | u16,
    message_id_being_responded_to=st.none() | u16,
    affected_sop_class_uid=st.none() | uid_strategy,
    priority=st.none() | u16,
    data_set_type=u16,
    status=st.none() | u16,
)


@SETTINGS
@given(_commands_pydicom_can_read)
def test_our_command_sets_decode_in_pydicom(cmd):
    encoded = encode_command(cmd)
    ds = ds_decode(BytesIO(encoded), True, True)
    assert ds.CommandGroupLength == len(encoded) - 12
    assert ds.CommandField == cmd.command_field
    assert ds.CommandDataSetType == cmd.data_set_type
    for keyword, value in [
        ("MessageID", cmd.message_id),
        ("MessageIDBeingRespondedTo", cmd.message_id_being_responded_to),
        ("AffectedSOPClassUID", cmd.affected_sop_class_uid),
        ("Priority", cmd.priority),
        ("Status", cmd.status),
    ]:
        assert ds.get(keyword) == value
    # And pydicom writes the same bytes back: our element order and padding are canonical.
    assert ds_encode(ds, True, True) == encoded


# ---------------------------------------------------------------- whole messages through the state machine


def _their_pdata_pdus(message, context_id: int, max_pdu: int) -> list[bytes]:
    out = []
    for primitive in message.encode_msg(context_id, max_pdu):
        pdu = NP.P_DATA_TF()
        pdu.from_primitive(primitive)
        out.append(pdu.encode())
    return out


@pytest.mark.parametrize("max_pdu", [0, 16, 17, 64, 16382])
def test_their_fragmented_find_responses_feed_our_state_machine(max_pdu):
    marker = "ZZPATIENTMARKER^SECRET"
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3.4.5"
    identifier.PatientName = marker
    encoded_identifier = ds_encode(identifier, True, True)

    assoc = established()
    wire = b""
    for status, with_identifier in ((0xFF00, True), (0xFF01, True), (0x0000, False)):
        rsp = DP.C_FIND()
        rsp.MessageIDBeingRespondedTo = 3
        rsp.AffectedSOPClassUID = uids.STUDY_ROOT_FIND
        rsp.Status = status
        if with_identifier:
            rsp.Identifier = BytesIO(encoded_identifier)
        message = DM.C_FIND_RSP()
        message.primitive_to_message(rsp)
        wire += b"".join(_their_pdata_pdus(message, 3, max_pdu))

    events = []
    for i in range(0, len(wire), 7):  # arbitrary TCP segmentation
        events += assoc.receive(wire[i : i + 7])
    assert [type(e) for e in events] == [DimseMessage] * 3
    assert [e.command.status for e in events] == [0xFF00, 0xFF01, 0x0000]
    assert [e.data_set_length for e in events] == [len(encoded_identifier)] * 2 + [0]
    assert all(e.context_id == 3 and e.command.message_id_being_responded_to == 3 for e in events)
    assert marker not in repr(events)


@pytest.mark.parametrize("max_pdu", [0, 16, 30, 16382])
def test_our_messages_decode_in_pynetdicom(max_pdu):
    assoc = established(max_length=max_pdu)
    wire = assoc.send(3, c_find_rq(9, uids.STUDY_ROOT_FIND), study_query("2.25.77"))
    message = DM.DIMSEMessage()
    done = False
    pdus = Peer().read(wire)
    for pdu in pdus:
        assert not done
        if max_pdu:
            assert len(encode_pdu(pdu)) - 6 <= max_pdu
        theirs = NP.P_DATA_TF()
        theirs.decode(encode_pdu(pdu))
        done = message.decode_msg(theirs.to_primitive())
    assert done and type(message).__name__ == "C_FIND_RQ"
    assert message.context_id == 3
    cs = message.command_set
    assert (cs.MessageID, cs.Priority, cs.AffectedSOPClassUID) == (9, 0, uids.STUDY_ROOT_FIND)
    identifier = ds_decode(message.data_set, True, True)
    assert (identifier.QueryRetrieveLevel, identifier.StudyInstanceUID) == ("STUDY", "2.25.77")


@pytest.mark.parametrize("max_pdu", [0, 8, 20, 100])
def test_fragmenting_matches_pynetdicoms(max_pdu):
    # Same split points, same flags, same bytes: C-ECHO-RQ (command only) and a command + data set.
    echo = DP.C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = uids.VERIFICATION
    message = DM.C_ECHO_RQ()
    message.primitive_to_message(echo)
    ours = [encode_pdu(p) for p in fragment_message(1, encode_command(c_echo_rq(1)), None, max_pdu)]
    assert ours == _their_pdata_pdus(message, 1, max_pdu)

    store_like = DP.C_FIND()
    store_like.MessageID = 3
    store_like.AffectedSOPClassUID = uids.STUDY_ROOT_FIND
    store_like.Priority = 0
    store_like.Identifier = BytesIO(bytes(range(200)))
    message = DM.C_FIND_RQ()
    message.primitive_to_message(store_like)
    command = ds_encode(message.command_set, True, True)
    ours = [encode_pdu(p) for p in fragment_message(3, command, bytes(range(200)), max_pdu)]
    assert ours == _their_pdata_pdus(message, 3, max_pdu)


def test_their_echo_rsp_completes_our_echo():
    assoc = established()
    assoc.send(1, c_echo_rq(1), None)
    rsp = DP.C_ECHO()
    rsp.MessageIDBeingRespondedTo = 1
    rsp.AffectedSOPClassUID = uids.VERIFICATION
    rsp.Status = 0
    message = DM.C_ECHO_RSP()
    message.primitive_to_message(rsp)
    (event,) = assoc.receive(b"".join(_their_pdata_pdus(message, 1, 16384)))
    assert event == DimseMessage(1, Command(CommandField.C_ECHO_RSP, None, 1, uids.VERIFICATION, None,
                                            NO_DATA_SET, 0), 0)
