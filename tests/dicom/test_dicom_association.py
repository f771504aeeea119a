"""The requestor's state machine (PS3.8 9.2) against an in-memory acceptor (after h11's
tests/helpers.py): what it sends, the events it gives, the states it passes through, and what it
refuses from the peer (PeerProtocolError, with the A-ABORT reason) and from us
(LocalProtocolError)."""

from __future__ import annotations

import pytest
from dicom_helpers import (
    CONTROL_CONTEXT_ID,
    STUDY_FIND_ID,
    VERIFICATION_ID,
    Peer,
    accept,
    established,
    pdata,
    probe_request,
    probe_template,
    response,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dicom_golden import GOLDEN_AC, GOLDEN_RJ

from pacswatch.dicom import uids
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
from pacswatch.dicom.dimse import (
    DATA_SET_PRESENT,
    Command,
    CommandField,
    c_cancel_rq,
    c_echo_rq,
    c_find_rq,
    encode_command,
    fragment_message,
    status_category,
)
from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
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
    UserInformation,
    ae_title_problem,
    decode_pdu,
    encode_pdu,
)


def echo_rsp(message_id: int = 1, status: int = 0x0000) -> Command:
    return Command(CommandField.C_ECHO_RSP, message_id_being_responded_to=message_id,
                   affected_sop_class_uid=uids.VERIFICATION, status=status)


def find_rsp(message_id: int, status: int, with_identifier: bool) -> Command:
    return Command(CommandField.C_FIND_RSP, message_id_being_responded_to=message_id,
                   affected_sop_class_uid=uids.STUDY_ROOT_FIND, status=status,
                   data_set_type=0x0102 if with_identifier else 0x0101)


def requested(max_receive_pdu: int = 1 << 20) -> Association:
    assoc = Association(probe_request(), max_receive_pdu=max_receive_pdu)
    assoc.request()
    return assoc


def in_state(name: str) -> Association:
    if name == "Sta5":
        return requested()
    assoc = established()
    if name == "Sta7":
        assoc.release()
    return assoc


def assert_peer_error(assoc: Association, data: bytes, abort_reason: int, match: str | None = None):
    with pytest.raises(PeerProtocolError, match=match) as info:
        assoc.receive(data)
    assert info.value.abort_reason == abort_reason
    assert assoc.state is State.CLOSED and assoc.is_closed
    return info.value


# ---------------------------------------------------------------- the happy paths


def test_request_accept_echo_response_release():
    rq = probe_request()
    assoc = Association(rq, max_receive_pdu=1 << 20)
    peer = Peer()
    assert assoc.state is State.IDLE and assoc.is_closed

    (sent,) = peer.read(assoc.request())
    assert sent == rq
    assert assoc.state is State.AWAITING_AC and not assoc.is_closed

    (event,) = assoc.receive(encode_pdu(accept(rq, accept_ids={1, 3})))
    assert isinstance(event, AssociationAccepted)
    assert assoc.state is State.ESTABLISHED
    assert sorted(assoc.accepted) == [1, 3]
    assert assoc.accepted[1].abstract_syntax == uids.VERIFICATION
    assert assoc.accepted[1].transfer_syntax == uids.IMPLICIT_VR_LE

    wire = assoc.send(VERIFICATION_ID, c_echo_rq(1), None)
    assert peer.messages(wire) == [(1, c_echo_rq(1), None)]

    (event,) = assoc.receive(response(1, echo_rsp(1)))
    assert event == DimseMessage(context_id=1, command=echo_rsp(1), data_set_length=0)
    assert assoc.state is State.ESTABLISHED

    (sent,) = peer.read(assoc.release())
    assert sent == AReleaseRQ()
    assert assoc.state is State.AWAITING_RELEASE_RP
    (event,) = assoc.receive(encode_pdu(AReleaseRP()))
    assert event == ReleaseConfirmed()
    assert assoc.state is State.CLOSED and assoc.is_closed


def test_reject_gives_the_raw_triple_and_closes():
    assoc = requested()
    (event,) = assoc.receive(GOLDEN_RJ)
    assert event == AssociationRejected(AAssociateRJ(result=1, source=1, reason=7))
    assert assoc.state is State.CLOSED and assoc.is_closed
    with pytest.raises(LocalProtocolError):
        assoc.receive(GOLDEN_RJ)  # the caller must stop reading


def test_accept_and_reject_may_arrive_in_any_segmentation():
    for data, kind in ((GOLDEN_AC, AssociationAccepted), (GOLDEN_RJ, AssociationRejected)):
        assoc = requested()
        events = []
        for i in range(len(data)):
            events += assoc.receive(data[i : i + 1])
        assert [type(e) for e in events] == [kind]


def test_ac_with_no_accepted_context_is_still_an_association():
    assoc = requested()
    (event,) = assoc.receive(encode_pdu(accept(probe_request(), accept_ids=set())))
    assert isinstance(event, AssociationAccepted)
    assert assoc.accepted == {} and assoc.state is State.ESTABLISHED
    assert not event.ac.contexts[0].accepted
    # The caller releases (docs/dicom-reference.md §7.6).
    assert decode_pdu(assoc.release()) == AReleaseRQ()


def test_ac_answering_only_some_contexts_is_fine():
    rq = probe_request()
    ac = AAssociateAC(rq.called_ae, rq.calling_ae, (PresentationContextAC(3, 0, uids.IMPLICIT_VR_LE),))
    assoc = requested()
    assoc.receive(encode_pdu(ac))
    assert list(assoc.accepted) == [3]
    assert assoc.peer_max_pdu == 0  # no max length sub-item: no limit


def test_promiscuous_peer_accepts_the_control_context():
    assoc = requested()
    assoc.receive(encode_pdu(accept(probe_request())))
    assert assoc.accepted[CONTROL_CONTEXT_ID].abstract_syntax.startswith("2.25.")


# ---------------------------------------------------------------- aborts


@pytest.mark.parametrize("state", ["Sta5", "Sta6", "Sta7"])
@pytest.mark.parametrize("source, reason", [(0, 0), (2, 2), (2, 6), (1, 9)])
def test_peer_abort_in_every_state(state, source, reason):
    assoc = in_state(state)
    (event,) = assoc.receive(encode_pdu(AAbort(source, reason)))
    assert event == Aborted(source, reason)
    assert assoc.state is State.CLOSED and assoc.is_closed


def test_abort_mid_message_drops_the_partial_message():
    # Command complete, data set half sent, then A-ABORT: no message, just the abort.
    pdus = fragment_message(STUDY_FIND_ID, encode_command(find_rsp(3, 0xFF00, True)), b"x" * 100, 40)
    partial = b"".join(encode_pdu(p) for p in pdus[:-1])
    assoc = established()
    assert assoc.receive(partial + encode_pdu(AAbort(2, 0))) == [Aborted(2, 0)]
    assert assoc.is_closed
    # Whole messages before the abort in the same read are delivered, in order.
    assoc = established()
    events = assoc.receive(response(1, echo_rsp()) + encode_pdu(AAbort(0, 0)))
    assert [type(e) for e in events] == [DimseMessage, Aborted]


@pytest.mark.parametrize("state", ["Sta1", "Sta5", "Sta6", "Sta7"])
def test_our_abort_from_any_state(state):
    assoc = Association(probe_request(), max_receive_pdu=1 << 20) if state == "Sta1" else in_state(state)
    assert decode_pdu(assoc.abort(reason=2, source=2)) == AAbort(2, 2)
    assert assoc.state is State.CLOSED and assoc.is_closed


def test_nothing_after_a_closing_pdu_is_read():
    # A-ABORT, RJ or RP ends the association; bytes after it in the same read are not parsed.
    for state, closing in (("Sta5", GOLDEN_RJ), ("Sta6", encode_pdu(AAbort(2, 0))),
                           ("Sta7", encode_pdu(AReleaseRP()))):
        assoc = in_state(state)
        events = assoc.receive(closing + encode_pdu(AAbort(0, 0)) + response(1, echo_rsp()))
        assert len(events) == 1 and assoc.is_closed


@pytest.mark.parametrize(
    "state, closing, kind",
    [
        ("Sta5", GOLDEN_RJ, AssociationRejected),
        ("Sta5", encode_pdu(AAbort(2, 1)), Aborted),
        ("Sta6", encode_pdu(AAbort(0, 0)), Aborted),
        ("Sta7", encode_pdu(AReleaseRP()), ReleaseConfirmed),
    ],
    ids=["rj", "abort-sta5", "abort-sta6", "rp"],
)
@pytest.mark.parametrize(
    "trailer",
    [b"GET / HTTP/1.1\r\n", b"\x16\x03\x03\x00\x02\x02\x28", b"\x01\x00\xff\xff\xff\xff", b"\x00" * 10],
    ids=["http", "tls", "huge", "zeros"],
)
def test_garbage_after_a_closing_pdu_does_not_hide_it(state, closing, kind, trailer):
    # What the peer said before its garbage is the fact to report: a rejection must not turn
    # into a protocol error because junk followed it in the same TCP segment.
    assoc = in_state(state)
    events = assoc.receive(closing + trailer)
    assert [type(e) for e in events] == [kind]
    assert assoc.is_closed


# ---------------------------------------------------------------- unexpected PDUs


@pytest.mark.parametrize(
    "state, pdu",
    [
        ("Sta5", PDataTF((PDV(1, True, True, encode_command(echo_rsp())),))),
        ("Sta5", AReleaseRQ()),
        ("Sta5", AReleaseRP()),
        ("Sta5", probe_request()),
        ("Sta6", accept(probe_request())),
        ("Sta6", AAssociateRJ(1, 1, 1)),
        ("Sta6", AReleaseRP()),
        ("Sta6", probe_request()),
        ("Sta7", accept(probe_request())),
        ("Sta7", AAssociateRJ(1, 1, 1)),
        ("Sta7", probe_request()),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_unexpected_pdus_are_peer_errors_with_reason_2(state, pdu):
    assoc = in_state(state)
    assert_peer_error(assoc, encode_pdu(pdu), abort_reason=2, match="unexpected")


def test_ac_after_ac_in_the_same_read():
    assoc = requested()
    ac = encode_pdu(accept(probe_request()))
    with pytest.raises(PeerProtocolError) as info:
        assoc.receive(ac + ac)
    assert info.value.abort_reason == 2 and assoc.is_closed


# ---------------------------------------------------------------- contexts


def test_pdata_on_a_rejected_context_is_refused():
    assoc = established(accept_ids={1})
    assert_peer_error(assoc, response(STUDY_FIND_ID, echo_rsp()), abort_reason=6, match="not accepted")


@pytest.mark.parametrize("context_id", [0, 2, 29, 255])
def test_pdata_on_an_unproposed_context_is_refused(context_id):
    assoc = established()
    assert_peer_error(assoc, pdata(PDV(context_id, True, True, encode_command(echo_rsp()))), abort_reason=6)


def test_ac_accepting_a_context_we_never_proposed():
    rq = probe_request()
    ac = accept(rq, extra=(PresentationContextAC(29, 0, uids.IMPLICIT_VR_LE),))
    assoc = requested()
    assert_peer_error(assoc, encode_pdu(ac), abort_reason=6, match="did not propose")


def test_ac_rejecting_a_context_we_never_proposed():
    ac = accept(probe_request(), extra=(PresentationContextAC(101, 3, None),))
    assert_peer_error(requested(), encode_pdu(ac), abort_reason=6)


@pytest.mark.parametrize("transfer_syntax", [uids.EXPLICIT_VR_LE, "1.2.3.4", None])
def test_ac_accepting_with_a_transfer_syntax_we_did_not_propose(transfer_syntax):
    rq = probe_request()
    ac = AAssociateAC(rq.called_ae, rq.calling_ae, (PresentationContextAC(1, 0, transfer_syntax),))
    assert_peer_error(requested(), encode_pdu(ac), abort_reason=6, match="transfer syntax")


# ---------------------------------------------------------------- DIMSE messages and data sets


def test_find_pendings_carry_only_the_data_set_length():
    marker = b"ZZMARKER^PATIENT"
    identifier = b"\x10\x00\x10\x00" + len(marker).to_bytes(4, "little") + marker
    assoc = established()
    peer = Peer()
    wire = assoc.send(STUDY_FIND_ID, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(""))
    ((ctx, cmd, data_set),) = peer.messages(wire)
    assert data_set == study_query("") and cmd.has_data_set

    stream = b"".join([
        response(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), identifier),
        response(STUDY_FIND_ID, find_rsp(3, 0xFF01, True), identifier),
        response(STUDY_FIND_ID, find_rsp(3, 0x0000, False)),
    ])
    events = assoc.receive(stream)
    assert [e.command.status for e in events] == [0xFF00, 0xFF01, 0x0000]
    assert [status_category(e.command.status) for e in events] == ["pending", "pending", "success"]
    assert [e.data_set_length for e in events] == [len(identifier), len(identifier), 0]
    for event in events:
        assert marker.decode() not in repr(event)
        assert not any(marker in repr(getattr(event, f)).encode() for f in event.__dataclass_fields__)
    # Nor does the association keep it anywhere once the messages are complete.
    assert marker.decode() not in repr(vars(assoc))
    assert assoc._framer.buffered == 0


@pytest.mark.parametrize("max_pdu", [8, 9, 20, 64, 0])
def test_fragmented_commands_and_data_sets_across_pdvs_and_pdus(max_pdu):
    data_set = bytes(range(256)) * 3
    assoc = established()
    wire = response(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), data_set, max_pdu=max_pdu)
    events = []
    for i in range(0, len(wire), 13):
        events += assoc.receive(wire[i : i + 13])
    assert events == [DimseMessage(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), len(data_set))]


def test_many_pdvs_in_one_pdu_assemble_one_message():
    command = encode_command(find_rsp(3, 0xFF00, True))
    pdvs = [PDV(3, True, False, command[i : i + 5]) for i in range(0, len(command) - 5, 5)]
    pdvs.append(PDV(3, True, True, command[len(pdvs) * 5 :]))
    pdvs += [PDV(3, False, False, b"abc"), PDV(3, False, False, b""), PDV(3, False, True, b"de")]
    (event,) = established().receive(pdata(*pdvs))
    assert event == DimseMessage(3, find_rsp(3, 0xFF00, True), 5)


def test_two_messages_in_one_pdata_give_two_events():
    one = PDV(1, True, True, encode_command(echo_rsp(1)))
    two = PDV(3, True, True, encode_command(find_rsp(3, 0x0000, False)))
    events = established().receive(pdata(one, two))
    assert events == [DimseMessage(1, echo_rsp(1), 0), DimseMessage(3, find_rsp(3, 0x0000, False), 0)]


def test_a_message_may_follow_a_data_set_in_the_same_pdu():
    events = established().receive(pdata(
        PDV(3, True, True, encode_command(find_rsp(3, 0xFF00, True))),
        PDV(3, False, True, b"identifier"),
        PDV(3, True, True, encode_command(find_rsp(3, 0x0000, False))),
    ))
    assert [(e.command.status, e.data_set_length) for e in events] == [(0xFF00, 10), (0x0000, 0)]


def test_empty_data_set_counts_zero():
    (event,) = established().receive(
        pdata(PDV(3, True, True, encode_command(find_rsp(3, 0xFF00, True))), PDV(3, False, True, b""))
    )
    assert event.data_set_length == 0 and event.command.has_data_set


@pytest.mark.parametrize(
    "pdvs, match, reason",
    [
        ([PDV(3, False, True, b"data")], "without a command", 5),
        ([PDV(1, True, True, encode_command(echo_rsp())), PDV(1, False, True, b"data")], "without a command", 5),
        ([PDV(3, True, True, encode_command(find_rsp(3, 0xFF00, True))), PDV(3, True, True, b"")],
         "inside a data set", 5),
        ([PDV(3, True, False, b"\x00\x00"), PDV(1, True, True, b"")], "interleaves", 5),
        ([PDV(3, True, True, encode_command(find_rsp(3, 0xFF00, True))), PDV(1, False, True, b"x")],
         "interleaves", 5),
        ([PDV(1, True, True, b"\x00\x00\x00\x01\x02\x00")], "truncated", 6),
        ([PDV(1, True, True, b"")], "without CommandField", 6),
    ],
)
def test_malformed_dimse_streams(pdvs, match, reason):
    assert_peer_error(established(), pdata(*pdvs), abort_reason=reason, match=match)


def test_data_set_type_other_than_0101_means_present():
    for dst in (0x0000, 0x0001, 0x0102, 0xFEFE):
        cmd = Command(CommandField.C_FIND_RSP, message_id_being_responded_to=3, status=0xFF00, data_set_type=dst)
        assert cmd.has_data_set
        assoc = established()
        assert assoc.receive(response(3, cmd)) == []  # waits for the data set
        (event,) = assoc.receive(pdata(PDV(3, False, True, b"xy")))
        assert event.data_set_length == 2


def test_pdata_still_arrives_in_sta7():
    assoc = in_state("Sta7")
    (event,) = assoc.receive(response(1, echo_rsp()))
    assert isinstance(event, DimseMessage) and assoc.state is State.AWAITING_RELEASE_RP
    events = assoc.receive(response(3, find_rsp(3, 0xFF00, True), b"id") + encode_pdu(AReleaseRP()))
    assert [type(e) for e in events] == [DimseMessage, ReleaseConfirmed]


# ---------------------------------------------------------------- release


def test_release_collision_in_sta7():
    assoc = in_state("Sta7")
    (event,) = assoc.receive(encode_pdu(AReleaseRQ()))
    assert event == ReleaseRequested()
    assert decode_pdu(assoc.release_response()) == AReleaseRP()
    assert assoc.state is State.CLOSED and assoc.is_closed


def test_peer_release_request_in_sta6():
    assoc = established()
    (event,) = assoc.receive(encode_pdu(AReleaseRQ()))
    assert event == ReleaseRequested()
    assert decode_pdu(assoc.release_response()) == AReleaseRP()
    assert assoc.is_closed


# ---------------------------------------------------------------- our mistakes


def test_local_errors_for_actions_in_the_wrong_state():
    fresh = Association(probe_request(), max_receive_pdu=1 << 20)
    with pytest.raises(LocalProtocolError):
        fresh.receive(GOLDEN_AC)  # before request()
    with pytest.raises(LocalProtocolError):
        fresh.send(1, c_echo_rq(1), None)
    with pytest.raises(LocalProtocolError):
        fresh.release()

    assoc = requested()
    with pytest.raises(LocalProtocolError):
        assoc.request()  # twice
    with pytest.raises(LocalProtocolError):
        assoc.send(1, c_echo_rq(1), None)  # Sta5
    with pytest.raises(LocalProtocolError):
        assoc.send_no_reply(1, c_cancel_rq(1))
    with pytest.raises(LocalProtocolError):
        assoc.release()

    assoc = in_state("Sta7")
    with pytest.raises(LocalProtocolError):
        assoc.send(1, c_echo_rq(1), None)
    with pytest.raises(LocalProtocolError):
        assoc.release()

    assoc = established()
    assoc.abort()
    for action in (lambda: assoc.receive(b""), lambda: assoc.send(1, c_echo_rq(1), None),
                   lambda: assoc.request()):
        with pytest.raises(LocalProtocolError):
            action()


@pytest.mark.parametrize("context_id", [3, 29, 0])
def test_send_on_an_unaccepted_context_is_our_error(context_id):
    assoc = established(accept_ids={1})
    with pytest.raises(LocalProtocolError, match="not accepted"):
        assoc.send(context_id, c_echo_rq(1), None)


def test_invalid_values_we_send_are_local_errors():
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateRQ("", "PACSWATCH", ()))
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateRQ("                ", "PACSWATCH", ()))
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateRQ("A" * 17, "PACSWATCH", ()))
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateAC("A", "B", (PresentationContextAC(2, 0, uids.IMPLICIT_VR_LE),)))
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateAC("A", "B", (PresentationContextAC(257, 0, uids.IMPLICIT_VR_LE),)))
    with pytest.raises(LocalProtocolError):
        encode_pdu(AAssociateRQ("A", "B", (), UserInformation(implementation_version_name="X" * 70000)))
    with pytest.raises(LocalProtocolError):
        encode_pdu(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- fragmenting what we send


def _check_fragments(pdus: list[PDataTF], command: bytes, data_set: bytes | None, max_pdu: int) -> None:
    seen_data = False
    command_parts, data_parts = [], []
    for pdu in pdus:
        encoded = encode_pdu(pdu)
        if max_pdu:
            # The max length is that of the P-DATA-TF variable field (PS3.8 D.1): the PDU minus
            # its 6-byte header.
            assert len(encoded) - 6 <= max_pdu
        kinds = {pdv.is_command for pdv in pdu.pdvs}
        assert len(kinds) == 1  # command and data set never share a PDU
        for pdv in pdu.pdvs:
            if pdv.is_command:
                assert not seen_data
                command_parts.append(pdv)
            else:
                seen_data = True
                data_parts.append(pdv)
    assert b"".join(p.data for p in command_parts) == command
    assert [p.is_last for p in command_parts] == [False] * (len(command_parts) - 1) + [True]
    if data_set is None:
        assert data_parts == []
    else:
        assert b"".join(p.data for p in data_parts) == data_set
        assert [p.is_last for p in data_parts] == [False] * (len(data_parts) - 1) + [True]


@settings(max_examples=300, deadline=None)
@given(
    command=st.binary(min_size=1, max_size=300),
    data_set=st.none() | st.binary(max_size=600),
    max_pdu=st.just(0) | st.integers(8, 400),
)
def test_fragment_message_respects_the_peer_max_length(command, data_set, max_pdu):
    pdus = fragment_message(5, command, data_set, max_pdu)
    _check_fragments(pdus, command, data_set, max_pdu)
    assert all(pdv.context_id == 5 for pdu in pdus for pdv in pdu.pdvs)
    if max_pdu == 0:
        # No limit: one PDU for the command, one for the data set.
        assert len(pdus) == 1 + (data_set is not None)


def test_fragment_message_with_an_exact_fit():
    command = bytes(94)
    (pdu,) = fragment_message(1, command, None, 100)
    assert len(encode_pdu(pdu)) == 106  # variable field exactly 100
    assert len(fragment_message(1, bytes(95), None, 100)) == 2


def test_fragment_message_rejects_a_max_length_with_no_room():
    with pytest.raises(LocalProtocolError):
        fragment_message(1, b"xx", None, 7)


@pytest.mark.parametrize("peer_max", [0, 8, 50, 16382, None])
def test_send_follows_the_max_length_the_peer_announced(peer_max):
    assoc = established(max_length=peer_max)
    command, identifier = c_find_rq(3, uids.STUDY_ROOT_FIND), study_query("2.25.99999999")
    wire = assoc.send(STUDY_FIND_ID, command, identifier)
    pdus = Peer().read(wire)
    _check_fragments(pdus, encode_command(command), identifier, peer_max or 0)


@pytest.mark.parametrize("peer_max", [1, 2, 6, 7])
def test_a_peer_max_length_too_small_for_any_pdv_is_the_peers_error(peer_max):
    # A peer value, not our mistake: it must surface as PeerProtocolError (protocol-error), not
    # LocalProtocolError (which the probe reports as our own bug, status "error").
    assoc = established(max_length=peer_max)
    with pytest.raises(PeerProtocolError) as info:
        assoc.send(VERIFICATION_ID, c_echo_rq(1), None)
    assert info.value.abort_reason == 6
    with pytest.raises(PeerProtocolError):
        assoc.send_no_reply(VERIFICATION_ID, c_cancel_rq(1))


def test_find_command_and_identifier_never_share_a_pdu_even_when_they_fit():
    assoc = established(max_length=0)
    wire = assoc.send(STUDY_FIND_ID, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(""))
    pdus = Peer().read(wire)
    assert [[pdv.is_command for pdv in p.pdvs] for p in pdus] == [[True], [False]]
    assert DATA_SET_PRESENT == 0x0000


@pytest.mark.parametrize("title", [
    "", "   ", "ABCDEFGHIJKLMNOPQ", "PACS\x1b[31m", "A\nURGENT", "BACK\\SLASH", "DEL\x7f", "NUL\x00", "ÄRZTE",
])
def test_an_invalid_ae_title_is_never_encoded(title):
    # PS3.5 6.2 (VR AE): 1-16 characters of the default repertoire, no backslash, no control
    # characters, not only spaces. Ours go on the wire to every server scanned.
    assert ae_title_problem(title) is not None
    contexts = probe_request().contexts
    for rq in (AAssociateRQ(title, "PACSWATCH", contexts, UserInformation(16384)),
               AAssociateRQ("ANY-SCP", title, contexts, UserInformation(16384))):
        with pytest.raises(LocalProtocolError, match="invalid AE title"):
            encode_pdu(rq)
    # The scan's request template splices called AE titles in without the encoder: it refuses too.
    with pytest.raises(LocalProtocolError, match="invalid AE title"):
        probe_template().build(title)


@pytest.mark.parametrize("title", ["PACSWATCH", "ANY-SCP", " PACS", "A", "ABCDEFGHIJKLMNOP", "x_y.z~!"])
def test_a_valid_ae_title_is_encoded_padded(title):
    assert ae_title_problem(title) is None
    encoded = probe_template().build(title)[1]
    assert encoded[10:26] == title.encode("ascii").ljust(16, b" ")


def test_find_answers_at_another_level_are_counted_and_dropped():
    from pacswatch.dicom.association import MAX_IDENTIFIER_READ
    from pacswatch.dicom.identifiers import PATIENT_ID, QUERY_RETRIEVE_LEVEL, STUDY_INSTANCE_UID, encode_identifier

    marker = b"ZZMARKER-ID1"
    at_patient = encode_identifier([(QUERY_RETRIEVE_LEVEL, "CS", b"PATIENT"), (PATIENT_ID, "LO", marker)])
    at_study = encode_identifier([(QUERY_RETRIEVE_LEVEL, "CS", b"STUDY"), (STUDY_INSTANCE_UID, "UI", b"1.2.9" + marker)])
    huge = encode_identifier([(QUERY_RETRIEVE_LEVEL, "CS", b"PATIENT"), ((0x0010, 0x4000), "LT", b"x" * MAX_IDENTIFIER_READ)])
    assoc = established()
    assoc.send(STUDY_FIND_ID, c_find_rq(3, uids.STUDY_ROOT_FIND), study_query(""))
    events = assoc.receive(b"".join([
        response(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), at_patient, max_pdu=40),  # in fragments
        response(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), at_study),
        response(STUDY_FIND_ID, find_rsp(3, 0xFF00, True), huge),  # too large to read: not counted
        response(STUDY_FIND_ID, find_rsp(4, 0xFF00, True), at_patient),  # answers nothing we asked
        response(STUDY_FIND_ID, find_rsp(3, 0x0000, False)),
    ]))
    assert len(events) == 5
    assert assoc.off_level_identifiers == 1
    assert marker.decode() not in repr(vars(assoc)) and assoc._identifier is None
