"""The session owns its timer (probes/dicom/session.py, after aioquic's get_timer/handle_timer):
it holds the answer's deadline and the endpoint's, says when it is next due, and decides on a
fired timer itself. Pure: a fake clock, no socket (the driver's side is in
test_dicom_conversation.py, against a real server)."""

from __future__ import annotations

from pacswatch.dicom.association import Association
from pacswatch.dicom.pdu import AAssociateAC, PresentationContextAC, UserInformation, encode_pdu
from pacswatch.identity import Identity
from pacswatch.net.errors import NetError
from pacswatch.probes.dicom.request import RequestTemplate
from pacswatch.probes.dicom.session import Session
from pacswatch.status import Status


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def session_at(now: float, endpoint_deadline: float) -> tuple[Session, Clock]:
    request, encoded = RequestTemplate(Identity(), 16384, "2.25.1").build("ANY-SCP")
    clock = Clock(now)
    return Session(Association(request, max_receive_pdu=1 << 20, encoded=encoded), endpoint_deadline, clock), clock


def associate_then_release(session: Session, seen: list):
    try:
        seen.append((yield from session.associate(5.0)))
        seen.append((yield from session.release(2.0)))
    except NetError as exc:
        seen.append(exc)


def accept_echo() -> bytes:
    ac = AAssociateAC("ANY-SCP", "PACSWATCH", (PresentationContextAC(1, 0, "1.2.840.10008.1.2"),),
                      UserInformation(max_length=16384))
    return encode_pdu(ac)


def test_the_timer_follows_the_answer_awaited_within_the_endpoints_deadline():
    session, clock = session_at(100.0, endpoint_deadline=130.0)
    assert session.get_timer() == 130.0  # nothing sent yet: the endpoint's deadline
    seen: list = []
    assert session.begin(associate_then_release(session, seen))  # the A-ASSOCIATE-RQ
    assert session.get_timer() == 105.0  # the association's timeout
    clock.now = 101.0
    session.feed(accept_echo())
    assert session.get_timer() == 103.0  # the A-RELEASE-RQ went out at once: its 2 s
    near_the_end, _ = session_at(129.0, endpoint_deadline=130.0)
    near_the_end.begin(associate_then_release(near_the_end, []))
    assert near_the_end.get_timer() == 130.0  # the endpoint's deadline bounds every answer


def test_a_timer_that_fires_before_the_deadline_changes_nothing_and_one_after_it_is_a_timeout():
    session, clock = session_at(100.0, endpoint_deadline=130.0)
    seen: list = []
    session.begin(associate_then_release(session, seen))
    clock.now = 104.0
    assert session.handle_timer(104.0) == b"" and seen == [] and not session.done  # early: nothing yet
    clock.now = 105.0
    session.handle_timer(105.0)
    (error,) = seen
    assert session.done and isinstance(error, NetError) and error.status is Status.IO_TIMEOUT
