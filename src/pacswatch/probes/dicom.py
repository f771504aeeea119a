"""The DICOM probe: what does this endpoint give a stranger, learnt in as few associations as
the facts allow, without moving a single object and without keeping any identifier.

Per endpoint:
1. Associate with a random called AE and our own calling AE, proposing Verification, the Q/R
   classes, Modality Worklist, three Storage classes and a random 2.25 control class.
2. Rejected with called-ae-not-recognized: retry with a short list of product defaults
   (service discovery), stopping at the first accepted. The calling AE is never guessed.
3. On the accepted association: C-ECHO; C-FIND with a random StudyInstanceUID (permission, no
   data); if permitted, count studies and patients by universal queries on unique keys only,
   cancelling at the limit; then release (abort if the release is ignored).
4. TLS on TLS ports, or when a plain association meets a TLS alert or a silent close.
5. A port that answers in HTTP, or says nothing, is checked for a web server (probes/detect.py):
   when HTTP answers, the web probe's record replaces the DICOM one.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pacswatch.assess import assess
from pacswatch.dicom import uids
from pacswatch.dicom.association import Association, AssociationAccepted, AssociationRejected
from pacswatch.dicom.dimse import c_echo_rq, c_find_rq
from pacswatch.dicom.errors import PeerProtocolError
from pacswatch.dicom.identifiers import patient_query, study_query
from pacswatch.dicom.names import abort_names, reject_names
from pacswatch.fingerprint.dicom import identify
from pacswatch.net.errors import NetError
from pacswatch.net.tls import ScannerTlsContext, is_client_cert_error, tls_facts
from pacswatch.probes.base import Endpoint, ProbeContext
from pacswatch.probes.detect import answers_http, speaks_http
from pacswatch.probes.dicom_request import RequestTemplate
from pacswatch.probes.dicom_session import PeerAborted, PeerClosed, Session, Steps, detached
from pacswatch.record import Association as AssociationFacts
from pacswatch.record import Behaviour, DicomFacts, Find, Record, Reject, TlsFacts
from pacswatch.status import Status
from pacswatch.targets.ports import DEFAULT_DICOM_PORTS
from pacswatch.text import clean_optional

if TYPE_CHECKING:
    from pacswatch.probes.http import HttpProbe

_CALLED_NEVER_VALID = "called-ae-not-recognized"
# What a failed DICOM attempt makes worth trying next on the same port.
NEXT_TLS = "tls"  # a TLS alert or a silent close: DICOM inside TLS
NEXT_WEB = "web"  # an HTTP response: the web probe
NEXT_WEB_CHECK = "web-check"  # nothing said (a timeout, or a silent close TLS did not explain): one GET
_NOTHING: frozenset[str] = frozenset()
# Statuses of an endpoint that never completed a TCP handshake: no random port check for them.
_NEVER_ACCEPTED = (Status.CONNECTION_REFUSED, Status.CONNECTION_TIMEOUT, Status.BLOCKED)


def random_ae() -> str:
    """A called AE title no server is configured with: tells 'accepts any' from 'checks'."""
    return "PW" + secrets.token_hex(5).upper()


def random_uid() -> str:
    return uids.random_uid(secrets.randbits(120))


class _Attempt:
    """What one association attempt produced: how it ended and, when accepted, what the
    exploration on it found (copied onto the record by the probe)."""

    def __init__(self, called_ae: str) -> None:
        self.called_ae = called_ae
        self.accepted: AssociationAccepted | None = None
        self.rejected: AssociationRejected | None = None
        self.failure: NetError | PeerProtocolError | PeerAborted | None = None
        self.echo: bool | None = None
        self.find = Find()
        self.released: bool | None = None
        self.detail: str | None = None
        self.by_syntax: dict[str, int] = {}
        self.heard = b""  # the peer's first bytes, when the association failed
        self.echoed = False  # those bytes were our own A-ASSOCIATE-RQ's (an echo service)


class DicomProbe:
    name = "dicom"
    default_ports = DEFAULT_DICOM_PORTS

    def __init__(self) -> None:
        self._tls: ScannerTlsContext | None = None
        # The web probe for ports that answer in HTTP; made on first use (the HTTP stack is a
        # fifth of the CLI's start-up, and most scans never need it here).
        self._web: HttpProbe | None = None
        # Made up once per probe (per scan): no server is configured with this control class,
        # this called AE title or this study, so they tell promiscuous servers, servers that
        # accept any called AE and servers that let anyone query apart as well as fresh ones per
        # endpoint would. Being the same for every peer, the request and the identifiers are
        # encoded once, and alike answers are decoded once.
        self.control_uid = random_uid()
        self.called_ae = random_ae()
        check_uid = random_uid()
        self._check_study = study_query(check_uid)
        self._check_patient = patient_query(check_uid[:64])  # LO allows 64 characters
        self._all_studies = study_query("")
        self._all_patients = patient_query()
        self._templates: dict[tuple, RequestTemplate] = {}

    def _template(self, opts) -> RequestTemplate:
        key = (opts.identity, opts.max_pdu)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = RequestTemplate(opts.identity, opts.max_pdu, self.control_uid)
        return template

    def _tls_context(self) -> ScannerTlsContext:
        if self._tls is None:
            self._tls = ScannerTlsContext()
        return self._tls

    async def run(self, ctx: ProbeContext, endpoint: Endpoint) -> Record:
        loop = ctx.loop
        started = loop.time()
        deadline = started + ctx.options.timeouts.endpoint
        record = _blank(endpoint, tls=endpoint.port in ctx.options.tls_ports)
        try:
            record, next_try = await self._probe(ctx, endpoint, record, deadline)
            if next_try & {NEXT_WEB, NEXT_WEB_CHECK}:
                web = await self._as_web(ctx, endpoint, record, next_try, deadline)
                if web is not None:
                    web.elapsed_ms = int((loop.time() - started) * 1000)
                    return web  # assessed and cleaned by the web probe
            if ctx.options.random_ports and record.status not in _NEVER_ACCEPTED:
                from pacswatch.probes.portcheck import check_random_ports

                record.behaviour = record.behaviour or Behaviour()
                record.behaviour.random_ports = await check_random_ports(ctx, endpoint)
        except Exception as exc:  # our bug: report it on the record, never crash the scan
            record.status = Status.ERROR
            record.detail = f"{type(exc).__name__}: {exc}"
        # Details may quote the peer (a sniffed banner, an error's text): cleaned here, once, as
        # the record model cleans the fields it validates (assignment is not validated).
        record.detail = clean_optional(record.detail)
        record.severity, record.reasons = assess(record)
        record.elapsed_ms = int((loop.time() - started) * 1000)
        return record

    async def _probe(
        self, ctx: ProbeContext, endpoint: Endpoint, record: Record, deadline: float
    ) -> tuple[Record, frozenset[str]]:
        """Try the port's usual transport; when the answer hints at the other one (a TLS alert
        or a silent close on a plain port, a failed handshake on a TLS port), try that too and
        keep whichever attempt found a service. Also returns what is worth trying after DICOM
        (NEXT_WEB, NEXT_WEB_CHECK) for the attempt kept."""
        tls_first = record.transport == "tls"
        next_try = await self._probe_dicom(ctx, endpoint, record, deadline, tls=tls_first)
        if not (NEXT_TLS in next_try and ctx.options.try_tls_fallback):
            return record, next_try - {NEXT_TLS}
        other = _blank(endpoint, tls=not tls_first)
        other_next = await self._probe_dicom(ctx, endpoint, other, deadline, tls=not tls_first)
        found = other.service is not None or (other.tls is not None and other.tls.handshake)
        if found:
            if tls_first and record.tls is not None:
                other.tls = record.tls  # keep the failed handshake's facts: TLS was tried first
            return other, other_next - {NEXT_TLS}
        return record, next_try - {NEXT_TLS}

    async def _as_web(
        self, ctx: ProbeContext, endpoint: Endpoint, record: Record, next_try: frozenset[str], deadline: float
    ) -> Record | None:
        """The web probe's record for a port that answered in HTTP (or, asked once, answers a
        GET); None when it does not, or when the web probe found no web service either."""
        if NEXT_WEB not in next_try:
            tls = self._tls_context().context if record.transport == "tls" else None
            if not await answers_http(ctx, endpoint, deadline, tls):
                return None
        if self._web is None:
            from pacswatch.probes.http import HttpProbe

            self._web = HttpProbe()
        web = await self._web.run(ctx, endpoint, https_first=record.transport == "tls")
        if web.status != Status.SUCCESS:
            return None  # the DICOM record says what happened first
        heard = "answered the DICOM association request in HTTP" if NEXT_WEB in next_try else \
            "said nothing to DICOM and answered an HTTP request"
        web.detail = clean_optional(f"{heard}: probed as a web port" + (f"; {web.detail}" if web.detail else ""))
        return web

    # ------------------------------------------------------------ associations

    async def _attempt(
        self, ctx: ProbeContext, endpoint: Endpoint, called_ae: str, deadline: float, tls: bool, record: Record,
    ) -> _Attempt:
        opts = ctx.options
        attempt = _Attempt(called_ae)
        request, encoded = self._template(opts).build(called_ae)
        tls_ctx = self._tls_context() if tls else None
        try:
            conn = await ctx.connect(endpoint, deadline, tls_ctx.context if tls_ctx else None)
        except NetError as exc:
            if tls and record.tls is None:
                record.tls = TlsFacts(handshake=False, error=exc.detail,
                                      client_cert_required=is_client_cert_error(exc.detail))
            attempt.failure = detached(exc)
            return attempt
        if tls and tls_ctx is not None and record.tls is None:
            ssl_object = conn.ssl_object
            assert ssl_object is not None  # a connection made with a TLS context has one
            record.tls = tls_facts(ssl_object, client_cert_required=tls_ctx.client_cert_requested(ssl_object))
        session = Session(Association(request, max_receive_pdu=opts.max_received_pdu, encoded=encoded), deadline,
                          ctx.loop.time)
        steps = self._conversation(session, opts, attempt)
        try:
            await conn.converse(session, session.begin(steps))
        except NetError as exc:  # the connection ended under a conversation still waiting
            attempt.failure = attempt.failure or detached(exc)
        except BaseException:  # our bug (reported on the record by run()) or a cancelled scan
            conn.abort()
            raise
        failure = attempt.failure
        if failure is None:
            await conn.close()
            return attempt
        # An echo service sends our request back: its first bytes are our PDU's header.
        attempt.echoed = len(attempt.heard) >= 6 and encoded.startswith(attempt.heard)
        if isinstance(failure, NetError) and tls and is_client_cert_error(failure.detail) and record.tls:
            # TLS 1.3: the certificate_required alert arrives on the first read, after the
            # client believed the handshake was complete (docs/dicom-reference.md §6.2).
            record.tls.client_cert_required = True
        conn.abort()
        return attempt

    def _conversation(self, session: Session, opts, attempt: _Attempt) -> Steps:
        """One association: associate; when accepted, explore it at once and release."""
        try:
            event = yield from session.associate(opts.timeouts.association)
        except (NetError, PeerProtocolError, PeerAborted) as exc:
            attempt.failure = detached(exc)
            attempt.heard = session.first_bytes
            if isinstance(exc, PeerProtocolError):
                session.abort(exc.abort_reason, source=2)
            return
        if isinstance(event, AssociationRejected):
            attempt.rejected = event
            return
        attempt.accepted = event
        yield from self._explore(session, opts, attempt)

    async def _probe_dicom(
        self, ctx: ProbeContext, endpoint: Endpoint, record: Record, deadline: float, tls: bool
    ) -> frozenset[str]:
        """Fill the record from DICOM (over TLS or not). Returns what is worth trying next when
        the peer said nothing DICOM: NEXT_TLS (it closed, or answered with TLS), NEXT_WEB (it
        answered in HTTP), NEXT_WEB_CHECK (it said nothing)."""
        opts = ctx.options
        first_ae = self.called_ae
        attempt = await self._attempt(ctx, endpoint, first_ae, deadline, tls, record)
        if attempt.failure is not None:
            return self._record_failure(record, attempt, tls)

        record.service = "dicom"
        facts = DicomFacts(association=AssociationFacts(accepted=False, called_ae=first_ae,
                                                        calling_ae=opts.identity.calling_ae))
        record.dicom = facts
        if attempt.rejected is not None:
            result, source, reason = reject_names(*_triple(attempt.rejected))
            facts.association.reject = Reject(result=result, source=source, reason=reason)
            facts.accepts_any_called_ae = False if facts.association.reject.reason == _CALLED_NEVER_VALID else None
            if facts.association.reject.reason == _CALLED_NEVER_VALID and opts.ae_guess:
                attempt = await self._guess_called_ae(ctx, endpoint, deadline, tls, record)
            if attempt.accepted is None:
                record.status = Status.REJECTED
                record.detail = f"association rejected: {facts.association.reject.reason}"
                record.product = identify(facts, endpoint.port)
                return _NOTHING
            # Found by guessing: the facts below are that association's.
            facts.called_ae_found = attempt.called_ae
            facts.association.reject = None
        else:
            facts.accepts_any_called_ae = True
        facts.association.called_ae = attempt.called_ae
        self._accepted_facts(attempt, facts)
        if attempt.detail is not None:
            record.detail = attempt.detail
        record.status = Status.SUCCESS
        record.product = identify(facts, endpoint.port)
        return _NOTHING

    async def _guess_called_ae(
        self, ctx: ProbeContext, endpoint: Endpoint, deadline: float, tls: bool, record: Record
    ) -> _Attempt:
        """Service discovery over product-default called AE titles (never the calling AE)."""
        last = _Attempt("")
        for called_ae in ctx.options.ae_guess[:32]:
            attempt = await self._attempt(ctx, endpoint, called_ae, deadline, tls, record)
            if attempt.accepted is not None:
                return attempt
            last = attempt
            if attempt.failure is not None or (
                attempt.rejected is not None
                and reject_names(*_triple(attempt.rejected))[2] != _CALLED_NEVER_VALID
            ):
                break  # the peer now says something else (busy, gone): stop knocking
        return last

    def _record_failure(self, record: Record, attempt: _Attempt, tls: bool) -> frozenset[str]:
        failure = attempt.failure
        assert failure is not None  # called only for an attempt that failed
        record.behaviour = _behaviour(attempt)
        if isinstance(failure, PeerAborted):
            record.service = "dicom"  # an A-ABORT PDU is DICOM speaking
            source, reason = abort_names(failure.source, failure.reason)
            record.status = Status.REJECTED
            record.detail = f"peer sent A-ABORT ({source}, {reason}) instead of answering the association"
            record.dicom = DicomFacts(association=AssociationFacts(accepted=False))
            return _NOTHING
        if isinstance(failure, PeerProtocolError):
            record.status = Status.PROTOCOL_ERROR
            record.detail = str(failure)
            if speaks_http(attempt.heard):
                return frozenset({NEXT_WEB})
            return frozenset({NEXT_TLS}) if "looks like TLS" in str(failure) else _NOTHING
        record.status = failure.status
        record.detail = failure.detail
        if tls:
            if record.tls is not None and record.tls.client_cert_required:
                # Counted as the DICOM service it guards (we probed a DICOM port); what runs
                # behind the certificate check cannot be seen, and the detail says so.
                record.service = "dicom"
                record.status = Status.REJECTED
                record.detail = "TLS listener demands a client certificate; the DICOM service behind it is not visible"
                return _NOTHING
            if record.tls is None or not record.tls.handshake:
                return frozenset({NEXT_TLS})  # no TLS here: plain DICOM on a TLS port is a finding of its own
            if failure.status is Status.IO_TIMEOUT and not attempt.heard:
                return frozenset({NEXT_WEB_CHECK})  # HTTPS waiting for the end of a request head
            return _NOTHING
        if isinstance(failure, PeerClosed) and failure.silent:
            # A TLS listener, or a web server dropping what is not HTTP: TLS first, then a GET.
            return frozenset({NEXT_TLS, NEXT_WEB_CHECK})
        if failure.status is Status.IO_TIMEOUT and not attempt.heard:
            return frozenset({NEXT_WEB_CHECK})  # a web server waits for the end of a request head
        return _NOTHING

    # ------------------------------------------------------------ on an accepted association

    def _accepted_facts(self, attempt: _Attempt, facts: DicomFacts) -> None:
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
        facts.promiscuous = self.control_uid in by_syntax
        facts.store_accepted = any(s in by_syntax for s in uids.STORAGE_CLASSES)
        facts.move_accepted = any(s in by_syntax for s in uids.MOVE_CLASSES)
        facts.get_accepted = any(s in by_syntax for s in uids.GET_CLASSES)
        facts.worklist_accepted = uids.MODALITY_WORKLIST_FIND in by_syntax
        facts.echo = attempt.echo
        facts.find = attempt.find
        facts.released = attempt.released

    def _explore(self, session: Session, opts, attempt: _Attempt) -> Steps:
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
                alive = yield from self._find(session, by_syntax, attempt, opts.find_limit, t.dimse, t.release)
        except PeerAborted as exc:
            alive = False
            if attempt.echo is None and exc.phase == "DIMSE response":
                attempt.echo = False
        except (NetError, PeerProtocolError) as exc:
            alive = False
            if attempt.echo is None:
                attempt.echo = False
            attempt.detail = f"association ended early: {exc}"
            session.abort(getattr(exc, "abort_reason", 0), source=2 if isinstance(exc, PeerProtocolError) else 0)
        if alive and not assoc.is_closed:
            attempt.released = yield from session.release(t.release)

    def _find(self, session: Session, by_syntax: dict[str, int], attempt: _Attempt, limit: int, timeout: float,
              grace: float) -> Steps:
        """Permission with a random UID, then counts. Returns whether the association is still usable."""
        find = attempt.find
        study_ctx = by_syntax.get(uids.STUDY_ROOT_FIND)
        patient_ctx = by_syntax.get(uids.PATIENT_ROOT_FIND)
        if study_ctx is not None:
            check = yield from session.find(study_ctx, c_find_rq(3, uids.STUDY_ROOT_FIND), self._check_study,
                                            timeout, limit, grace)
        else:
            # Patient Root only: a random PatientID checks permission just as well.
            assert patient_ctx is not None  # _explore calls with one of the two accepted
            check = yield from session.find(patient_ctx, c_find_rq(3, uids.PATIENT_ROOT_FIND), self._check_patient,
                                            timeout, limit, grace)
        if check.pending and check.final_status is None:
            # Matches for a random UID, then no end (a flood that ignores C-CANCEL, an abort, a
            # close): pending responses carry matches, so the query is allowed, and what came is
            # a count of its level, at least. The association is gone (aborted by one side).
            find.allowed = True
            find.random_matches = check.pending
            if study_ctx is not None:
                find.studies = check.pending
            else:
                find.patients = check.pending
            find.capped = True
            if check.cut_off:
                attempt.detail = (f"C-FIND matches for a random UID kept coming ({check.pending} counted, "
                                  "C-CANCEL or the deadline ignored): association aborted")
            return False
        if check.final_status is None:
            find.allowed = False
            find.refusal = "aborted" if check.aborted else "connection closed" if check.closed else "no final response"
            return not (check.aborted or check.closed) and not session.assoc.is_closed
        if check.final_status not in (0x0000,) and check.pending == 0:
            find.allowed = False
            find.refusal = f"status 0x{check.final_status:04X}"
            return True
        find.allowed = True
        find.random_matches = check.pending  # a UID no archive holds: any match is a canned answer
        if study_ctx is not None:
            counted = yield from session.find(study_ctx, c_find_rq(5, uids.STUDY_ROOT_FIND), self._all_studies,
                                              timeout, limit, grace)
            find.studies, capped = _count(counted)
            find.capped |= capped
            if counted.cut_off:
                attempt.detail = "C-FIND matches kept coming past C-CANCEL or the deadline: association aborted"
            if counted.aborted or counted.closed or session.assoc.is_closed:
                return False
        if patient_ctx is not None:
            counted = yield from session.find(patient_ctx, c_find_rq(7, uids.PATIENT_ROOT_FIND), self._all_patients,
                                              timeout, limit, grace)
            find.patients, capped = _count(counted)
            find.capped |= capped
            if counted.cut_off:
                attempt.detail = "C-FIND matches kept coming past C-CANCEL or the deadline: association aborted"
            if counted.aborted or counted.closed or session.assoc.is_closed:
                return False
        return True


def _behaviour(attempt: _Attempt) -> Behaviour | None:
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


def _blank(endpoint: Endpoint, tls: bool) -> Record:
    return Record(ip=endpoint.ip, port=endpoint.port, transport="tls" if tls else "tcp", status=Status.ERROR,
                  scanned_at=datetime.now(timezone.utc))


def _count(outcome) -> tuple[int | None, bool]:
    """A count is reported when the peer finished, or when we cut it off at the limit."""
    if outcome.capped:
        return outcome.pending, True
    if outcome.final_status is None:
        return (outcome.pending or None), False
    return outcome.pending, False


def _triple(rejected: AssociationRejected) -> tuple[int, int, int]:
    return rejected.rj.result, rejected.rj.source, rejected.rj.reason
