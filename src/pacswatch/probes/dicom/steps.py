"""What the DICOM probe does on one association, and the decisions between associations.

The steps (`conversation`: associate, then on an accepted association C-ECHO, the C-FIND
permission check, the counts and the release) are generators that a `Session` runs as the
connection pushes the peer's bytes in (session.py); they fill an `AssociationAttempt`. The
decisions after an attempt (what a failure means for the record and what is worth trying next,
whether to keep guessing called AE titles, which facts an accepted association gives) are plain
functions of the attempt. No I/O here: probe.py connects, runs the steps and calls these.
"""

from __future__ import annotations

from pacswatch.dicom import uids
from pacswatch.dicom.association import AssociationAccepted, AssociationRejected
from pacswatch.dicom.dimse import c_echo_rq, c_find_rq
from pacswatch.dicom.errors import PeerAborted, PeerProtocolError, ProbeError
from pacswatch.dicom.names import abort_names, reject_names
from pacswatch.net.errors import NetError
from pacswatch.probes.base import ProbeOptions
from pacswatch.probes.detect import speaks_http
from pacswatch.probes.dicom.request import FindQueries
from pacswatch.probes.dicom.session import FindOutcome, PeerClosed, Session, Steps, detached
from pacswatch.record import AssociationFacts, Behaviour, DicomFacts, Find, Record
from pacswatch.status import Status
from pacswatch.text import clean_optional

CALLED_NEVER_VALID = "called-ae-not-recognized"
# What a failed DICOM attempt makes worth trying next on the same port.
NEXT_TLS = "tls"  # a TLS alert or a silent close: DICOM inside TLS
NEXT_WEB = "web"  # an HTTP response: the web probe
NEXT_WEB_CHECK = "web-check"  # nothing said (a timeout, or a silent close TLS did not explain): one GET
NEXT_WEB_ANSWERED = "web-answered"  # nothing said, and the GET during the wait was answered in HTTP
WEB = frozenset({NEXT_WEB, NEXT_WEB_CHECK, NEXT_WEB_ANSWERED})
NOTHING: frozenset[str] = frozenset()


class AssociationAttempt:
    """What one association attempt produced: how it ended and, when accepted, what the
    exploration on it found (copied onto the record by the probe)."""

    def __init__(self, called_ae: str) -> None:
        self.called_ae = called_ae
        self.accepted: AssociationAccepted | None = None
        self.rejected: AssociationRejected | None = None
        self.failure: ProbeError | None = None
        self.echo: bool | None = None
        self.find = Find()
        self.released: bool | None = None
        self.detail: str | None = None
        self.by_syntax: dict[str, int] = {}
        self.heard = b""  # the peer's first bytes, when the association failed
        self.answers_http: bool | None = None  # the GET during a silent wait (None: not made)
        self.echoed = False  # those bytes were our own A-ASSOCIATE-RQ's (an echo service)


# ------------------------------------------------------------ on one association


def conversation(session: Session, opts: ProbeOptions, attempt: AssociationAttempt, queries: FindQueries) -> Steps:
    """One association: associate; when accepted, explore it at once and release."""
    try:
        event = yield from session.associate(opts.timeouts.association)
    except ProbeError as exc:
        attempt.failure = detached(exc)
        attempt.heard = session.first_bytes
        if isinstance(exc, PeerProtocolError):
            session.abort(exc.abort_reason, source=2)
        return
    if isinstance(event, AssociationRejected):
        attempt.rejected = event
        return
    attempt.accepted = event
    yield from explore(session, opts, attempt, queries)


def explore(session: Session, opts: ProbeOptions, attempt: AssociationAttempt, queries: FindQueries) -> Steps:
    """On the accepted association: C-ECHO, the C-FIND permission check and counts, release."""
    assoc = session.assoc
    by_syntax = attempt.by_syntax = {c.abstract_syntax: c.id for c in assoc.accepted.values()}
    t = opts.timeouts
    alive = True
    try:
        if uids.VERIFICATION in by_syntax:
            response = yield from session.request(by_syntax[uids.VERIFICATION], c_echo_rq(1), None, t.dimse)
            attempt.echo = response.command.status == 0x0000
        if opts.find and (uids.STUDY_ROOT_FIND in by_syntax or uids.PATIENT_ROOT_FIND in by_syntax):
            alive = yield from find(session, by_syntax, attempt, queries, opts.find_limit, t.dimse, t.release)
    except PeerAborted as exc:
        alive = False
        if attempt.echo is None and exc.phase == "DIMSE response":
            attempt.echo = False
    except ProbeError as exc:
        alive = False
        if attempt.echo is None:
            attempt.echo = False
        attempt.detail = f"association ended early: {exc}"
        session.abort(getattr(exc, "abort_reason", 0), source=2 if isinstance(exc, PeerProtocolError) else 0)
    if attempt.find.allowed:
        # Counted by the state machine as the responses came, whichever way the queries ended.
        attempt.find.off_level_identifiers = assoc.off_level_identifiers
    if alive and not assoc.is_closed:
        attempt.released = yield from session.release(t.release)


def find(session: Session, by_syntax: dict[str, int], attempt: AssociationAttempt, queries: FindQueries,
         limit: int, timeout: float, grace: float) -> Steps[bool]:
    """Permission with a random UID, then counts. Returns whether the association is still usable."""
    found = attempt.find
    study_ctx = by_syntax.get(uids.STUDY_ROOT_FIND)
    patient_ctx = by_syntax.get(uids.PATIENT_ROOT_FIND)
    if study_ctx is not None:
        check = yield from session.find(study_ctx, c_find_rq(3, uids.STUDY_ROOT_FIND), queries.check_study,
                                        timeout, limit, grace)
    else:
        # Patient Root only: a random PatientID checks permission just as well.
        assert patient_ctx is not None  # explore calls with one of the two accepted
        check = yield from session.find(patient_ctx, c_find_rq(3, uids.PATIENT_ROOT_FIND), queries.check_patient,
                                        timeout, limit, grace)
    if check.pending and check.final_status is None:
        # Matches for a random UID, then no end (a flood that ignores C-CANCEL, an abort, a
        # close): pending responses carry matches, so the query is allowed, and what came is
        # a count of its level, at least. The association is gone (aborted by one side).
        found.allowed = True
        found.random_matches = check.pending
        if study_ctx is not None:
            found.studies = check.pending
        else:
            found.patients = check.pending
        found.capped = True
        if check.cut_off:
            attempt.detail = (f"C-FIND matches for a random UID kept coming ({check.pending} counted, "
                              "C-CANCEL or the deadline ignored): association aborted")
        return False
    if check.final_status is None:
        found.allowed = False
        found.refusal = "aborted" if check.aborted else "connection closed" if check.closed else "no final response"
        return not (check.aborted or check.closed) and not session.assoc.is_closed
    if check.final_status not in (0x0000,) and check.pending == 0:
        found.allowed = False
        found.refusal = f"status 0x{check.final_status:04X}"
        return True
    found.allowed = True
    found.random_matches = check.pending  # a UID no archive holds: any match is a canned answer
    if study_ctx is not None:
        counted = yield from session.find(study_ctx, c_find_rq(5, uids.STUDY_ROOT_FIND), queries.all_studies,
                                          timeout, limit, grace)
        found.studies, capped = count(counted)
        found.capped |= capped
        if counted.cut_off:
            attempt.detail = "C-FIND matches kept coming past C-CANCEL or the deadline: association aborted"
        if counted.aborted or counted.closed or session.assoc.is_closed:
            return False
    if patient_ctx is not None:
        counted = yield from session.find(patient_ctx, c_find_rq(7, uids.PATIENT_ROOT_FIND), queries.all_patients,
                                          timeout, limit, grace)
        found.patients, capped = count(counted)
        found.capped |= capped
        if counted.cut_off:
            attempt.detail = "C-FIND matches kept coming past C-CANCEL or the deadline: association aborted"
        if counted.aborted or counted.closed or session.assoc.is_closed:
            return False
    return True


def count(outcome: FindOutcome) -> tuple[int | None, bool]:
    """A count is reported when the peer finished, or when we cut it off at the limit."""
    if outcome.capped:
        return outcome.pending, True
    if outcome.final_status is None:
        return (outcome.pending or None), False
    return outcome.pending, False


# ------------------------------------------------------------ between associations


def reject_reason(rejected: AssociationRejected) -> str:
    """The A-ASSOCIATE-RJ's reason by name (PS3.8 9.3.4)."""
    return reject_names(rejected.rj.result, rejected.rj.source, rejected.rj.reason)[2]


def keep_guessing(attempt: AssociationAttempt) -> bool:
    """After a guessed called AE title that was not accepted: guess on only while the peer still
    says the called AE is wrong (busy, gone or anything else: stop knocking)."""
    return attempt.failure is None and (attempt.rejected is None or reject_reason(attempt.rejected) == CALLED_NEVER_VALID)


def record_failure(record: Record, attempt: AssociationAttempt, tls: bool) -> frozenset[str]:
    """Fill the record for an attempt that ended without an A-ASSOCIATE-AC or -RJ, and say what is
    worth trying next on the port: NEXT_TLS (it closed, or answered with TLS), NEXT_WEB (it
    answered in HTTP), NEXT_WEB_CHECK (it said nothing)."""
    failure = attempt.failure
    assert failure is not None  # called only for an attempt that failed
    record.behaviour = behaviour(attempt)
    if isinstance(failure, PeerAborted):
        record.service = "dicom"  # an A-ABORT PDU is DICOM speaking
        source, reason = abort_names(failure.source, failure.reason)
        record.status = Status.REJECTED
        record.detail = f"peer sent A-ABORT ({source}, {reason}) instead of answering the association"
        record.dicom = DicomFacts(association=AssociationFacts(accepted=False))
        return NOTHING
    if isinstance(failure, PeerProtocolError):
        record.status = Status.PROTOCOL_ERROR
        record.detail = str(failure)
        if speaks_http(attempt.heard):
            return frozenset({NEXT_WEB})
        return frozenset({NEXT_TLS}) if "looks like TLS" in str(failure) else NOTHING
    assert isinstance(failure, NetError)  # what else a probe meets comes from the transport
    record.status = failure.status
    record.detail = failure.detail
    if tls:
        if record.tls is not None and record.tls.client_cert_required:
            # Counted as the DICOM service it guards (we probed a DICOM port); what runs
            # behind the certificate check cannot be seen, and the detail says so.
            record.service = "dicom"
            record.status = Status.REJECTED
            record.detail = "TLS listener demands a client certificate; the DICOM service behind it is not visible"
            return NOTHING
        if record.tls is None or not record.tls.handshake:
            return frozenset({NEXT_TLS})  # no TLS here: plain DICOM on a TLS port is a finding of its own
        if silent_timeout(attempt):
            return _after_silence(attempt)  # HTTPS waiting for the end of a request head
        return NOTHING
    if isinstance(failure, PeerClosed) and failure.silent:
        # A TLS listener, or a web server dropping what is not HTTP: TLS first, then a GET.
        return frozenset({NEXT_TLS, NEXT_WEB_CHECK})
    if silent_timeout(attempt):
        return _after_silence(attempt)  # a web server waits for the end of a request head
    return NOTHING


def behaviour(attempt: AssociationAttempt) -> Behaviour | None:
    """How a failed attempt's peer behaved, for the deception signals (deception.py): silent
    (held open to our deadline, or closed), dripping, or echoing our request back."""
    failure = attempt.failure
    if isinstance(failure, PeerClosed) and failure.silent:
        return Behaviour(silent=True, held_open=False)
    if isinstance(failure, NetError) and failure.status is Status.IO_TIMEOUT:
        if not attempt.heard:
            return Behaviour(silent=True, held_open=True)
        return Behaviour(dripped=True)
    if attempt.echoed:
        return Behaviour(echoed=True)
    return None


def accepted_facts(attempt: AssociationAttempt, facts: DicomFacts, control_uid: str) -> None:
    """Copy what an accepted association showed onto the record's DICOM facts."""
    assert attempt.accepted is not None  # called for an accepted association
    info = attempt.accepted.ac.user_info
    by_syntax = attempt.by_syntax
    facts.association.accepted = True
    # Assignment skips the model's PeerText validation (validate_assignment costs ~1 us a
    # field on the hot path), so the peer's two strings are cleaned here, where they enter.
    facts.association.implementation_class_uid = clean_optional(info.implementation_class_uid)
    facts.association.implementation_version_name = clean_optional(info.implementation_version_name)
    facts.association.max_pdu_length = info.max_length
    facts.association.accepted_contexts = [uids.NAMES.get(s, "control") for s in by_syntax]
    facts.promiscuous = control_uid in by_syntax
    facts.store_accepted = any(s in by_syntax for s in uids.STORAGE_CLASSES)
    facts.move_accepted = any(s in by_syntax for s in uids.MOVE_CLASSES)
    facts.get_accepted = any(s in by_syntax for s in uids.GET_CLASSES)
    facts.worklist_accepted = uids.MODALITY_WORKLIST_FIND in by_syntax
    facts.echo = attempt.echo
    facts.find = attempt.find
    facts.released = attempt.released


def silent_timeout(attempt: AssociationAttempt) -> bool:
    """The association timed out without a byte from the peer."""
    failure = attempt.failure
    return isinstance(failure, NetError) and failure.status is Status.IO_TIMEOUT and not attempt.heard


def _after_silence(attempt: AssociationAttempt) -> frozenset[str]:
    """After a silent timeout: the web probe if the GET made during the wait was answered, nothing
    if it was not, one GET now if none was made (the endpoint's deadline came first)."""
    if attempt.answers_http is None:
        return frozenset({NEXT_WEB_CHECK})
    return frozenset({NEXT_WEB_ANSWERED}) if attempt.answers_http else NOTHING
