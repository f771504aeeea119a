"""The sans-IO acceptor behind the fast responder and the abort-after-request peer."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pacswatch.dicom import uids
from pacswatch.dicom.dimse import c_cancel_rq, c_echo_rq, c_find_rq, decode_command, encode_command, fragment_message
from pacswatch.dicom.identifiers import study_query
from pacswatch.dicom.pdu import (
    AAbort,
    AAssociateAC,
    AReleaseRP,
    AReleaseRQ,
    PduFramer,
    encode_pdu,
)
from pacswatch.lab.acceptor import LAB_IMPLEMENTATION_UID, Acceptor, accept_echo_and_find

from lab_client import CONTROL, rq


def pdus(data: bytes):
    return PduFramer(1 << 20).feed(data)


def message(context_id, command, data_set=None, max_length=16384) -> bytes:
    return b"".join(encode_pdu(p) for p in fragment_message(context_id, encode_command(command), data_set, max_length))


def test_full_association():
    acceptor = Acceptor()
    out, close = acceptor.receive(encode_pdu(rq(syntaxes=(uids.VERIFICATION, uids.STUDY_ROOT_FIND, CONTROL,
                                                          uids.CT_IMAGE_STORAGE))))
    (ac,) = pdus(out)
    assert isinstance(ac, AAssociateAC) and not close
    assert [(c.id, c.result) for c in ac.contexts] == [(1, 0), (3, 0), (5, 3), (7, 0)]
    assert ac.user_info.implementation_class_uid == LAB_IMPLEMENTATION_UID
    out, _ = acceptor.receive(message(1, c_echo_rq(9)))
    echo = decode_command(pdus(out)[0].pdvs[0].data)
    assert (echo.command_field, echo.status, echo.message_id_being_responded_to) == (0x8030, 0, 9)
    # Command and data set fed byte by byte: nothing until the last byte of the data set.
    find = message(3, c_find_rq(10, uids.STUDY_ROOT_FIND), study_query(), max_length=40)
    outs = [acceptor.receive(find[i:i + 1])[0] for i in range(len(find))]
    assert not any(outs[:-1]) and outs[-1]
    rsp = decode_command(pdus(outs[-1])[0].pdvs[0].data)
    assert (rsp.command_field, rsp.status, rsp.message_id_being_responded_to) == (0x8020, 0, 10)
    assert acceptor.receive(message(3, c_cancel_rq(10))) == (b"", False)
    out, close = acceptor.receive(encode_pdu(AReleaseRQ()))
    assert pdus(out) == [AReleaseRP()] and not close and acceptor.released


def test_transfer_syntax_not_supported():
    acceptor = Acceptor()
    out, _ = acceptor.receive(encode_pdu(rq(transfer=(uids.EXPLICIT_VR_LE,))))
    assert [c.result for c in pdus(out)[0].contexts] == [4, 4, 3]  # the control: abstract syntax first


def test_abort_on_data():
    acceptor = Acceptor(accept_echo_and_find, abort_on_data=True)
    out, _ = acceptor.receive(encode_pdu(rq(syntaxes=(uids.VERIFICATION, uids.CT_IMAGE_STORAGE))))
    assert [c.result for c in pdus(out)[0].contexts] == [0, 3]
    out, close = acceptor.receive(message(1, c_echo_rq(1)))
    assert pdus(out) == [AAbort(0, 0)] and close


def test_unaccepted_context_and_garbage_abort():
    acceptor = Acceptor()
    acceptor.receive(encode_pdu(rq()))
    out, close = acceptor.receive(message(5, c_echo_rq(1)))  # the rejected control context
    assert isinstance(pdus(out)[0], AAbort) and close
    out, close = Acceptor().receive(b"GET / HTTP/1.1\r\n\r\n")
    assert pdus(out) == [AAbort(2, 1)] and close


def test_data_before_association_aborts():
    out, close = Acceptor().receive(message(1, c_echo_rq(1)))
    assert isinstance(pdus(out)[0], AAbort) and close


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_any_bytes_get_an_answer_never_an_exception(data, step):
    acceptor = Acceptor()
    acceptor.receive(encode_pdu(rq()))
    for i in range(0, len(data), step):
        out, close = acceptor.receive(data[i:i + step])
        for pdu in pdus(out):
            assert pdu.pdu_type in (0x04, 0x06, 0x07)
        if close:
            assert acceptor.receive(b"more") == (b"", True)
            break
