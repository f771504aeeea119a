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
5. A port that answers in HTTP, or says nothing, is checked for a web server (probes/detect.py,
   with the GET timed to end with a silent association's wait): when HTTP answers, the web
   probe's record replaces the DICOM one.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pacswatch.dicom import uids
from pacswatch.dicom.association import Association
from pacswatch.dicom.names import reject_names
from pacswatch.fingerprint.dicom import identify
from pacswatch.net.errors import NetError
from pacswatch.net.tls import ScannerTlsContext, is_client_cert_error, tls_facts
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions
from pacswatch.probes.detect import QuietCheck, answers_http, quiet_check_after
from pacswatch.probes.dicom import steps
from pacswatch.probes.dicom.request import FindQueries, RequestTemplate
from pacswatch.probes.dicom.session import Session, detached
from pacswatch.probes.dicom.steps import (
    CALLED_NEVER_VALID,
    NEXT_TLS,
    NEXT_WEB,
    NOTHING,
    AssociationAttempt,
)
from pacswatch.record import AssociationFacts, DicomFacts, Record, Reject, TlsFacts
from pacswatch.status import Status
from pacswatch.targets.ports import DEFAULT_DICOM_PORTS
from pacswatch.text import clean_optional

if TYPE_CHECKING:
    from pacswatch.probes.http import HttpProbe


def random_ae() -> str:
    """A called AE title no server is configured with: tells 'accepts any' from 'checks'."""
    return "PW" + secrets.token_hex(5).upper()


def random_uid() -> str:
    return uids.random_uid(secrets.randbits(120))


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
        self.queries = FindQueries.with_check_uid(random_uid())
        self._templates: dict[tuple, RequestTemplate] = {}

    def _template(self, opts: ProbeOptions) -> RequestTemplate:
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
            if next_try & steps.WEB:
                web = await self._as_web(ctx, endpoint, record, next_try, deadline)
                if web is not None:
                    web.elapsed_ms = int((loop.time() - started) * 1000)
                    return web  # cleaned by the web probe
        except Exception as exc:  # our bug: report it on the record, never crash the scan
            record.status = Status.ERROR
            record.detail = f"{type(exc).__name__}: {exc}"
        # Details may quote the peer (a sniffed banner, an error's text): cleaned here, once, as
        # the record model cleans the fields it validates (assignment is not validated).
        record.detail = clean_optional(record.detail)
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
        if not next_try & {NEXT_WEB, steps.NEXT_WEB_ANSWERED}:
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
        web_check: bool = False,
    ) -> AssociationAttempt:
        """One association. With `web_check`, a GET starts when the association has waited all
        but the GET's budget without a byte (detect.QuietCheck); its answer is `answers_http`."""
        opts = ctx.options
        attempt = AssociationAttempt(called_ae)
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
        check = None
        if web_check:
            check = QuietCheck(ctx, endpoint, deadline, tls_ctx.context if tls_ctx else None,
                               quiet_check_after(opts.timeouts.association, opts.timeouts.http),
                               lambda: bool(session.first_bytes) or session.done)
        try:
            await conn.converse(session, session.begin(steps.conversation(session, opts, attempt, self.queries)))
        except NetError as exc:  # the connection ended under a conversation still waiting
            attempt.failure = attempt.failure or detached(exc)
        except BaseException:  # our bug (reported on the record by run()) or a cancelled scan
            conn.abort()
            if check is not None:
                check.cancel()
            raise
        failure = attempt.failure
        if failure is None:
            await conn.close()
        else:
            if isinstance(failure, NetError) and tls and is_client_cert_error(failure.detail) and record.tls:
                # TLS 1.3: the certificate_required alert arrives on the first read, after the
                # client believed the handshake was complete (docs/dicom-reference.md §6.2).
                record.tls.client_cert_required = True
            conn.abort()
        if check is not None:
            if steps.silent_timeout(attempt):
                attempt.answers_http = await check.result()  # timed to be done about now
            else:
                check.cancel()
        return attempt

    async def _probe_dicom(
        self, ctx: ProbeContext, endpoint: Endpoint, record: Record, deadline: float, tls: bool
    ) -> frozenset[str]:
        """Fill the record from DICOM (over TLS or not). Returns what is worth trying next when
        the peer said nothing DICOM: NEXT_TLS (it closed, or answered with TLS), NEXT_WEB (it
        answered in HTTP), NEXT_WEB_CHECK (it said nothing)."""
        opts = ctx.options
        first_ae = self.called_ae
        attempt = await self._attempt(ctx, endpoint, first_ae, deadline, tls, record, web_check=True)
        if attempt.failure is not None:
            return steps.record_failure(record, attempt, tls)

        record.service = "dicom"
        facts = DicomFacts(association=AssociationFacts(accepted=False, called_ae=first_ae,
                                                        calling_ae=opts.identity.calling_ae))
        record.dicom = facts
        if attempt.rejected is not None:
            rj = attempt.rejected.rj
            result, source, reason = reject_names(rj.result, rj.source, rj.reason)
            facts.association.reject = Reject(result=result, source=source, reason=reason)
            facts.accepts_any_called_ae = False if reason == CALLED_NEVER_VALID else None
            if reason == CALLED_NEVER_VALID and opts.ae_guess:
                attempt = await self._guess_called_ae(ctx, endpoint, deadline, tls, record)
            if attempt.accepted is None:
                record.status = Status.REJECTED
                record.detail = f"association rejected: {reason}"
                record.product = identify(facts, endpoint.port)
                return NOTHING
            # Found by guessing: the facts below are that association's.
            facts.called_ae_found = attempt.called_ae
            facts.association.reject = None
        else:
            facts.accepts_any_called_ae = True
        facts.association.called_ae = attempt.called_ae
        steps.accepted_facts(attempt, facts, self.control_uid)
        if attempt.detail is not None:
            record.detail = attempt.detail
        record.status = Status.SUCCESS
        record.product = identify(facts, endpoint.port)
        return NOTHING

    async def _guess_called_ae(
        self, ctx: ProbeContext, endpoint: Endpoint, deadline: float, tls: bool, record: Record
    ) -> AssociationAttempt:
        """Service discovery over product-default called AE titles (never the calling AE)."""
        last = AssociationAttempt("")
        for called_ae in ctx.options.ae_guess[:32]:
            attempt = await self._attempt(ctx, endpoint, called_ae, deadline, tls, record)
            if attempt.accepted is not None:
                return attempt
            last = attempt
            if not steps.keep_guessing(attempt):
                break  # the peer now says something else (busy, gone): stop knocking
        return last


def _blank(endpoint: Endpoint, tls: bool) -> Record:
    return Record(ip=endpoint.ip, port=endpoint.port, transport="tls" if tls else "tcp", status=Status.ERROR,
                  scanned_at=datetime.now(timezone.utc))
