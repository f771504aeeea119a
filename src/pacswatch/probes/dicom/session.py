"""One DICOM association over one connection, as a conversation the connection drives.

The probe's steps for one association (associate, echo, find, release) are written as
generators: each `yield` waits for the peer's next bytes, which the connection pushes in from
`data_received` (`Connection.converse`). Sending only queues bytes; the connection writes them
when the generator next waits. A timeout or a transport failure is thrown in at the `yield`, so
the steps handle it with plain try/except. No task, future or timer per exchange: one scan makes
a dozen exchanges per endpoint, and awaiting each one cost more CPU than the protocol itself.

The session owns its timer (after aioquic's `get_timer()` / `handle_timer(now)`): it holds the
two deadlines there are, the instant by which the peer must answer what we sent last
(`answer_due`, set by each request from its timeout) and the endpoint's overall deadline. The
connection only asks `get_timer()` for when to wake it and calls `handle_timer(now)` then; the
session decides whether a deadline has passed and, if so, throws the timeout into the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, TypeVar

from pacswatch.dicom.association import (
    Aborted,
    Association,
    AssociationAccepted,
    AssociationRejected,
    DimseMessage,
    Event,
    ReleaseConfirmed,
    ReleaseRequested,
)
from pacswatch.dicom.dimse import Command, c_cancel_rq, status_category
from pacswatch.dicom.errors import PeerAborted, PeerProtocolError, ProbeError
from pacswatch.dicom.pdu import sniff
from pacswatch.net.errors import NetError, PeerNetError
from pacswatch.status import Status

_R = TypeVar("_R")
# A step of the conversation: yields to wait for bytes, gets them (b"" at end of stream), and
# returns its outcome (`Steps[FindOutcome]`; a bare `Steps` returns anything).
Steps = Generator[None, bytes, _R]


class PeerClosed(PeerNetError):
    """The peer closed the connection. `silent` when it never sent a byte (a TLS port, often)."""

    def __init__(self, phase: str, silent: bool) -> None:
        super().__init__(Status.PROTOCOL_ERROR, f"peer closed the connection during {phase}")
        self.silent = silent


def detached(exc: BaseException):
    """The exception without its traceback and chain: those hold the session's frames, its
    buffers and the peer's bytes alive in a reference cycle until the cyclic GC runs."""
    exc.__context__ = exc.__cause__ = None
    return exc.with_traceback(None)


@dataclass
class FindOutcome:
    final_status: int | None = None  # None: no final response (aborted, closed, or cut off by us)
    pending: int = 0
    capped: bool = False  # `pending` is a lower bound: we cancelled at the limit or cut the peer off
    aborted: bool = False
    closed: bool = False
    cut_off: bool = False  # we aborted the association: the peer kept answering past a deadline or cap


class Session:
    def __init__(self, assoc: Association, endpoint_deadline: float, clock: Callable[[], float]) -> None:
        self.assoc = assoc
        self.endpoint_deadline = endpoint_deadline
        self.answer_due: float | None = None  # when the peer must have answered; None: nothing awaited
        self.now = clock
        self.first_bytes = b""
        self.done = False
        self._events: list[Event] = []
        self._outbox: list[bytes] = []
        self._steps: Steps | None = None

    # ------------------------------------------------------------ driven by the connection

    def get_timer(self) -> float:
        """When `handle_timer` is next due (absolute loop time): the answer awaited or the end of
        the endpoint's time, whichever comes first."""
        due = self.answer_due
        return self.endpoint_deadline if due is None or due > self.endpoint_deadline else due

    def handle_timer(self, now: float) -> bytes:
        """The connection's timer fired: a deadline that has passed is a timeout, raised inside
        the steps where they wait; one that moved on since the timer was set is nothing yet."""
        if now < self.get_timer():
            return b""
        return self.fail(PeerNetError(Status.IO_TIMEOUT, "no answer before the deadline"))

    def begin(self, steps: Steps) -> bytes:
        """Run `steps` up to its first wait; returns the bytes to write."""
        self._steps = steps
        return self._advance(steps.send, None)

    def feed(self, data: bytes) -> bytes:
        """The peer's bytes (b"" when it closed); returns the bytes to write."""
        return self._advance(self._steps.send, data)  # type: ignore[union-attr]

    def fail(self, error: NetError) -> bytes:
        """A timeout or a transport failure, raised inside the steps where they wait."""
        return self._advance(self._steps.throw, error)  # type: ignore[union-attr]

    def _advance(self, how, value) -> bytes:
        if not self.done:
            try:
                how(value)
            except StopIteration:  # the steps record what they found themselves
                self.done = True
        out = b"".join(self._outbox) if len(self._outbox) != 1 else self._outbox[0]
        self._outbox.clear()
        return out

    # ------------------------------------------------------------ the steps

    def send(self, data: bytes) -> None:
        self._outbox.append(data)

    def _answer_within(self, timeout: float) -> None:
        self.answer_due = self.now() + timeout

    def next_event(self, phase: str) -> Steps[Event]:
        """The next event from the peer; raises NetError (incl. timeouts) or PeerProtocolError."""
        while not self._events:
            try:
                data = yield
            except NetError as exc:
                raise self._closed_before_any_byte(exc, phase) from None
            if not data:
                raise PeerClosed(phase, silent=not self.first_bytes)
            if len(self.first_bytes) < 8:
                self.first_bytes += data[: 8 - len(self.first_bytes)]
            try:
                self._events.extend(self.assoc.receive(data))
            except PeerProtocolError as exc:
                # Name what the peer seems to speak when its very first bytes were not DICOM.
                if self.first_bytes == data[:8] and "not a DICOM PDU" not in str(exc):
                    raise PeerProtocolError(f"{exc} ({sniff(self.first_bytes)})", exc.abort_reason) from None
                raise
        return self._events.pop(0)

    def _closed_before_any_byte(self, exc: NetError, phase: str) -> NetError:
        """A reset or close before the peer said anything, seen on a read or on a write (which one
        is a race with the peer's close), is the same hint as a silent close: some TLS listeners
        (Orthanc's) answer plain DICOM that way. Other failures pass through unchanged."""
        if exc.status is Status.PROTOCOL_ERROR and not self.first_bytes:
            return PeerClosed(phase, silent=True)
        return exc

    def associate(self, timeout: float) -> Steps[AssociationAccepted | AssociationRejected]:
        self.send(self.assoc.request())
        self._answer_within(timeout)
        event = yield from self.next_event("association")
        if isinstance(event, Aborted):
            raise PeerAborted(event.source, event.reason, "association")
        if isinstance(event, (AssociationAccepted, AssociationRejected)):
            return event
        raise PeerProtocolError(f"unexpected {type(event).__name__} while associating", abort_reason=2)

    def request(self, context_id: int, command: Command, data_set: bytes | None,
                timeout: float) -> Steps[DimseMessage]:
        """Send a request and return its (single, non-pending) response."""
        self.send(self.assoc.send(context_id, command, data_set))
        self._answer_within(timeout)
        while True:
            event = yield from self._dimse_event("DIMSE response")
            if event.command.message_id_being_responded_to == command.message_id:
                return event

    def find(
        self, context_id: int, command: Command, identifier: bytes, timeout: float, limit: int, grace: float
    ) -> Steps[FindOutcome]:
        """C-FIND: count pending responses (the state machine read their identifiers only for the
        level and unique key, association.py, and dropped them); at `limit` send C-CANCEL and
        give the peer `grace` seconds to finish."""
        outcome = FindOutcome()
        self.send(self.assoc.send(context_id, command, identifier))
        self._answer_within(timeout)
        try:
            while True:
                event = yield from self._dimse_event("C-FIND")
                if event.command.message_id_being_responded_to != command.message_id:
                    continue
                status = event.command.status if event.command.status is not None else 0xC000
                if status_category(status) != "pending":
                    outcome.final_status = status
                    return outcome
                if outcome.capped:
                    continue  # pendings in flight after our cancel are not counted, nor wait longer
                # Each response gets a fresh deadline; the endpoint deadline still bounds them all.
                self._answer_within(timeout)
                outcome.pending += 1
                if outcome.pending >= limit:
                    outcome.capped = True
                    assert command.message_id is not None  # our own C-FIND-RQ carries one
                    self.send(self.assoc.send_no_reply(context_id, c_cancel_rq(command.message_id)))
                    self._answer_within(grace)
        except PeerAborted:
            outcome.aborted = True
        except PeerClosed:
            outcome.closed = True
        except NetError:
            if not outcome.pending:
                raise
            # Matches came, then no end: the peer ignored our cancel, or flooded past the byte
            # cap or the deadline. Cut it off (docs/dicom-reference.md §7.8) and keep the count, a lower bound:
            # the pending responses already prove that the query is allowed.
            outcome.capped = outcome.cut_off = True
            self.abort()
        return outcome

    def _dimse_event(self, phase: str) -> Steps[DimseMessage]:
        while True:
            event = yield from self.next_event(phase)
            if isinstance(event, DimseMessage):
                return event
            if isinstance(event, Aborted):
                raise PeerAborted(event.source, event.reason, phase)
            if isinstance(event, ReleaseRequested):
                self.send(self.assoc.release_response())
                raise PeerClosed(phase, silent=False)

    def release(self, timeout: float) -> Steps[bool]:
        """Orderly release; True when the peer confirmed. A peer that ignores it is aborted."""
        try:
            self.send(self.assoc.release())
            self._answer_within(timeout)
            while True:
                event = yield from self.next_event("release")
                if isinstance(event, ReleaseConfirmed):
                    return True
                if isinstance(event, ReleaseRequested):  # release collision
                    self.send(self.assoc.release_response())
                    return True
                if isinstance(event, Aborted):
                    return False
                # DIMSE messages still in flight in Sta7 are dropped.
        except ProbeError:
            self.abort()
            return False

    def abort(self, reason: int = 0, source: int = 0) -> None:
        self.send(self.assoc.abort(reason, source))
