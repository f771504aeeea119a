"""The web probe: PACS web APIs, DICOMweb and viewers, measured without taking patient data.

Per endpoint, a handful of GETs (docs/dicom-reference.md §5): the front page, Orthanc's /system, the
product pages in fingerprint/web.py while nothing is recognised, then only count endpoints
(Orthanc /statistics, dcm4chee-arc .../count) and one QIDO-RS search for a random
StudyInstanceUID, which can match nothing. Study, patient and instance listings are never asked
for. Writability is inferred, never tried: an open Orthanc REST API accepts POST /instances
(there is no read-only mode before Orthanc 1.12.5), and a DICOMweb root whose OPTIONS answer
allows POST accepts STOW-RS. Both are weak: an authorisation plugin or a reverse proxy may refuse
writes it lets reads through, and an Allow header lists routes, not permissions.

The only login attempt is Orthanc's documented default user, once, and only with
`try_default_credentials` (an opt-in). HTTPS comes first on 443/8443, HTTP elsewhere, and the
other scheme is tried once when the first one fails at the TLS or HTTP layer.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from pacswatch.fingerprint import web as fp
from pacswatch.net.errors import NetError, PeerNetError
from pacswatch.net.tls import ScannerTlsContext, is_client_cert_error, tls_facts
from pacswatch.probes.base import Endpoint, ProbeContext, Timeouts
from pacswatch.probes.http_client import (
    ACCEPT_DICOM_JSON, ACCEPT_JSON, HEAD_TOO_LARGE, MAX_REDIRECTS, WebClient, WebResponse, join_url,
)
from pacswatch.record import DicomWeb, HttpFacts, Product, Record, TlsFacts
from pacswatch.status import Status
from pacswatch.text import clean_optional

WEB_PORTS = (80, 443, 8042, 8080, 8443)
HTTPS_FIRST_PORTS = frozenset({443, 8443})


def endpoint_budget(timeouts: Timeouts) -> float:
    """Seconds for one web endpoint: a few request timeouts, never more than the DICOM budget."""
    return min(timeouts.endpoint, 6 * timeouts.http)


@dataclass
class _Observation:
    """What one origin showed; becomes HttpFacts. Holds no body, only facts."""

    url: str
    status_code: int | None = None
    title: str | None = None
    product: Product | None = None
    auth: str | None = None
    realm: str | None = None
    page_auth: tuple[str, str | None] | None = None  # an auth hint seen on a page
    counts: dict[str, int] = field(default_factory=dict)
    dicomweb: DicomWeb = field(default_factory=DicomWeb)
    writable: bool | None = None
    qido_roots: list[str] = field(default_factory=list)  # learnt from the product (dcm4chee, OHIF)
    notes: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    default_credentials_tried: bool = False
    stopped: bool = False  # the peer misbehaved after the front page: no more requests


@dataclass
class _Failed:
    error: NetError
    other_scheme: bool  # worth trying the other scheme (the failure looked like TLS vs plain)


class HttpProbe:
    name = "http"
    default_ports: tuple[int, ...] = WEB_PORTS

    def __init__(self, https_ports: frozenset[int] | set[int] = HTTPS_FIRST_PORTS) -> None:
        self.https_ports = frozenset(https_ports)
        self._tls: ScannerTlsContext | None = None

    def _tls_context(self) -> ScannerTlsContext:
        if self._tls is None:  # one context per scan: building one costs milliseconds
            self._tls = ScannerTlsContext()
        return self._tls

    async def run(self, ctx: ProbeContext, endpoint: Endpoint, *, https_first: bool | None = None) -> Record:
        """`https_first` overrides the port's default order of schemes (the DICOM probe, having
        heard HTTP inside TLS, asks for HTTPS first)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        record = Record(ip=endpoint.ip, port=endpoint.port, status=Status.ERROR)
        deadline = started + endpoint_budget(ctx.options.timeouts)
        try:
            # The clients hold every request to `deadline`; this guard only catches our own bugs.
            async with asyncio.timeout_at(deadline + 2.0):
                await self._probe(ctx, endpoint, record, deadline, https_first)
        except TimeoutError:
            record.status, record.detail = Status.IO_TIMEOUT, "endpoint deadline passed"
        except Exception as exc:  # our bug: report it on the record, never crash the scan
            record.status, record.detail = Status.ERROR, f"{type(exc).__name__}: {exc}"[:300]
        # Notes and errors quote the peer (URLs, titles, httpx's messages): clean them here, once,
        # as the record model does for the fields it validates (assignment is not validated).
        record.detail = clean_optional(record.detail)
        record.elapsed_ms = int((loop.time() - started) * 1000)
        return record

    async def _probe(self, ctx: ProbeContext, endpoint: Endpoint, record: Record, deadline: float,
                     https_first: bool | None) -> None:
        if https_first is None:
            https_first = endpoint.port in self.https_ports
        schemes = ("https", "http") if https_first else ("http", "https")
        first: NetError | None = None
        for scheme in schemes:
            client = self._client(ctx, endpoint, scheme, deadline)
            try:
                outcome = await self._probe_origin(ctx, client)
            finally:
                await client.aclose()
            if isinstance(outcome, _Observation):
                _fill(record, outcome, client)
                return
            if first is None:
                first = outcome.error
                if scheme == "https" and first.status is Status.TLS_ERROR:
                    # HTTPS was expected here and the handshake failed: that is a TLS fact.
                    record.transport = "tls"
                    record.tls = TlsFacts(handshake=False, error=first.detail[:200],
                                          client_cert_required=is_client_cert_error(first.detail))
            if not outcome.other_scheme:
                break
        assert first is not None
        record.status, record.detail = first.status, first.detail

    def _client(self, ctx: ProbeContext, endpoint: Endpoint, scheme: str, deadline: float) -> WebClient:
        tls = self._tls_context()

        def describe(ssl_object) -> TlsFacts:
            return tls_facts(ssl_object, client_cert_required=tls.client_cert_requested(ssl_object))

        return WebClient(
            scheme, endpoint.ip, endpoint.port,
            user_agent=ctx.options.identity.user_agent,
            timeout=ctx.options.timeouts.http,
            deadline=deadline,
            ssl_context=tls.context,
            limiter=ctx.limiter,
            describe_tls=describe,
        )

    # ------------------------------------------------------------------ one origin

    async def _probe_origin(self, ctx: ProbeContext, client: WebClient) -> _Observation | _Failed:
        try:
            front = await client.get("/")
        except NetError as err:
            # TLS spoken to plain HTTP (or the reverse) fails at the TLS or HTTP layer; a peer
            # that sent an oversized HTTP head did speak HTTP, so the other scheme is no use.
            other = err.status in (Status.TLS_ERROR, Status.PROTOCOL_ERROR) and err.detail != HEAD_TOO_LARGE
            return _Failed(err, other)
        if front.too_many_redirects:
            return _Failed(PeerNetError(Status.PROTOCOL_ERROR, f"more than {MAX_REDIRECTS} redirects from /"), False)
        if front.status == 400 and b"plain HTTP request was sent to HTTPS port" in front.body:
            return _Failed(PeerNetError(Status.PROTOCOL_ERROR, "plain HTTP sent to a TLS port"), True)

        obs = _Observation(url=client.url("/"))
        self._note_page(obs, front, front_page=True)
        await self._orthanc(ctx, client, obs)
        for target in (fp.DCM4CHEE_UI, fp.CONQUEST_TOP):
            if obs.product is None:
                page = await self._get(client, obs, target)
                if page is not None:
                    self._note_page(obs, page, front_page=False)
        if obs.product is not None and obs.product.name == "dcm4chee-arc":
            await self._dcm4chee(client, obs)
        # An OHIF front page is read for its backend also when the API behind it is recognised
        # (Orthanc serves OHIF as a plugin): what the viewer names is reported either way.
        if "OHIF Viewer" in obs.components and front.ok:
            await self._ohif(client, obs, front)
        await self._dicomweb(client, obs)
        _settle_auth(obs)
        return obs

    async def _get(self, client: WebClient, obs: _Observation, target: str, **kwargs) -> WebResponse | None:
        """One request after the front page; a failure is noted and ends the probing."""
        if obs.stopped:
            return None
        if asyncio.get_running_loop().time() >= client.deadline:
            obs.stopped = True
            obs.notes.append("endpoint deadline reached")
            return None
        try:
            return await client.get(target, **kwargs)
        except NetError as err:
            obs.stopped = True
            obs.notes.append(f"stopped at {target.split('?')[0]}: {err.status} ({err.detail})")
            return None

    def _note_page(self, obs: _Observation, page: WebResponse, *, front_page: bool) -> None:
        """Title, product and auth hints from an HTML page (the front page or a product page)."""
        if page.offsite_location and not any(n.startswith("redirect to another") for n in obs.notes):
            where = fp.sanitize_url(page.offsite_location)
            obs.notes.append(f"redirect to another origin not followed: {where}")
        if page.malformed_location:
            # Reported as the peer's text (the record cleans it); the probe carries on.
            obs.notes.append(f"redirect to a malformed URL not followed: {page.malformed_location[:120]}")
        if page.status in (401, 403):
            challenge = fp.www_authenticate(page.headers.get("www-authenticate"))
            obs.page_auth = obs.page_auth or ("auth-required", challenge)
        elif 300 <= page.status < 400:
            location = page.offsite_location or page.headers.get("location")
            login = fp.login_redirect(location)
            if login:
                obs.page_auth = obs.page_auth or ("auth-required", login)
                obs.product = obs.product or fp.product_from_redirect(location)
        elif page.redirects and fp.login_redirect(page.url):  # followed to this origin's login page
            obs.page_auth = obs.page_auth or ("auth-required", fp.login_redirect(page.url))
        text = page.text() if page.is_html else ""
        match = fp.match_page(text) if page.ok and text else None
        if front_page or match is not None:
            obs.url, obs.status_code = page.url, page.status
            obs.title = fp.page_title(text) if text else None
        if match is None:
            return
        if obs.product is None or obs.product.name != match.product.name:
            obs.product = match.product
        obs.notes.append(match.component)
        obs.components.append(match.component)
        if match.login_form:
            obs.page_auth = ("auth-required", "login page")
        if match.data_bearing:
            # Conquest's dgate answers its top page and its query pages alike.
            obs.auth = "open"
            obs.notes.append(f"{match.component} answers without credentials; its query pages list "
                             "patients (not requested)")

    # ------------------------------------------------------------------ products

    async def _orthanc(self, ctx: ProbeContext, client: WebClient, obs: _Observation) -> None:
        resp = await self._get(client, obs, "/system", accept=ACCEPT_JSON)
        if resp is None:
            return
        data = fp.parse_json(resp.body) if resp.ok else None
        product = fp.orthanc_system(data)
        if product is not None:
            obs.product, obs.auth = product, "open"
            if isinstance(data, dict):
                obs.notes.append(f"Orthanc DICOM AE {str(data.get('DicomAet'))[:16]!r} "
                                 f"on port {str(data.get('DicomPort'))[:6]}")
            read_only = fp.orthanc_read_only(data)
            obs.writable = read_only is not True
            if obs.writable:
                obs.notes.append("writable inferred: an open Orthanc REST API accepts POST /instances "
                                 "(not tried)")
            stats = await self._get(client, obs, "/statistics", accept=ACCEPT_JSON)
            if stats is not None and stats.ok:
                obs.counts.update(fp.orthanc_counts(fp.parse_json(stats.body)))
            return
        challenge = resp.headers.get("www-authenticate") or ""
        if resp.status != 401 or fp.ORTHANC_REALM not in challenge:
            return
        obs.product = obs.product if obs.product and obs.product.name == "Orthanc" else Product(name="Orthanc")
        obs.auth, obs.realm = "auth-required", fp.www_authenticate(challenge)
        if not ctx.options.try_default_credentials:
            return
        # Opt-in: one login attempt with the user Orthanc >= 1.5.8 creates when remote access is
        # on and no user is registered. Only the answer's product facts are read.
        obs.notes.append("default credentials tried (opt-in)")
        obs.default_credentials_tried = True
        again = await self._get(client, obs, "/system", accept=ACCEPT_JSON, auth=fp.ORTHANC_DEFAULT_CREDENTIALS)
        if again is not None and again.ok:
            product = fp.orthanc_system(fp.parse_json(again.body))
            if product is not None:
                obs.product, obs.auth = product, "default-credentials"
                obs.notes.append("Orthanc's default user orthanc:orthanc is accepted")

    async def _dcm4chee(self, client: WebClient, obs: _Observation) -> None:
        aets = await self._get(client, obs, fp.DCM4CHEE_AETS, accept=ACCEPT_JSON)
        if aets is None:
            return
        if aets.status in (401, 403) or 300 <= aets.status < 400:
            _auth_required(obs, aets)
            return
        titles = fp.dcm4chee_ae_titles(fp.parse_json(aets.body)) if aets.ok else []
        ae = fp.DCM4CHEE_DEFAULT_AE if fp.DCM4CHEE_DEFAULT_AE in titles or not titles else titles[0]
        root = f"/dcm4chee-arc/aets/{quote(ae, safe='')}/rs"
        obs.qido_roots.append(root)
        for field_name in ("patients", "studies"):
            resp = await self._get(client, obs, f"{root}/{field_name}/count", accept=ACCEPT_JSON)
            if resp is None:
                return
            count = fp.dcm4chee_count(fp.parse_json(resp.body)) if resp.ok else None
            if count is not None:
                obs.counts[field_name] = count
                obs.auth = "open"
            elif resp.status in (401, 403):
                _auth_required(obs, resp)
                return

    async def _ohif(self, client: WebClient, obs: _Observation, front: WebResponse) -> None:
        config_url = join_url(front.url, fp.app_config_path(front.text()))
        if config_url is None:
            obs.notes.append(f"OHIF app-config at a malformed URL not fetched: {fp.app_config_path(front.text())[:120]}")
            return
        if not client.same_origin(config_url):
            obs.notes.append(f"OHIF app-config on another origin not fetched: {fp.sanitize_url(config_url)}")
            return
        config = await self._get(client, obs, httpx.URL(config_url).raw_path.decode("ascii", "replace"))
        if config is None or not config.ok:
            return
        backends = fp.ohif_backends(config.text())
        if backends:
            # Reported as strings only; followed solely when it is this very origin.
            obs.notes.append("OHIF backend (qidoRoot): " + ", ".join(backends))
            obs.backends.extend(backends)
        for backend in backends:
            joined = join_url(front.url, backend)
            if joined is not None and client.same_origin(joined):
                obs.qido_roots.append(httpx.URL(joined).path.rstrip("/"))

    async def _dicomweb(self, client: WebClient, obs: _Observation) -> None:
        roots = list(dict.fromkeys([*obs.qido_roots, *fp.DICOMWEB_ROOTS]))
        everything_locked = obs.page_auth is not None and obs.status_code in (401, 403)
        for root in roots:
            # A fresh random UID matches no study: an answer proves access and carries no data.
            uid = f"2.25.{secrets.randbits(122)}"
            resp = await self._get(client, obs, f"{root}/studies?StudyInstanceUID={uid}", accept=ACCEPT_DICOM_JSON)
            if resp is None:
                return
            if fp.qido_answer_open(resp.status, resp.body):
                obs.dicomweb = DicomWeb(present=True, open=True)
                obs.notes.append(f"QIDO-RS answers without credentials at {root}")
                if obs.product is not None and obs.product.name == "Orthanc" and root == "/dicom-web":
                    obs.notes.append("Orthanc DICOMweb plugin")
                    obs.components.append("Orthanc DICOMweb plugin")
                await self._stow_allowed(client, obs, root)
                return
            if resp.status in (401, 403) and not everything_locked:
                obs.dicomweb = DicomWeb(present=True, open=False)
                _auth_required(obs, resp)
                return

    async def _stow_allowed(self, client: WebClient, obs: _Observation, root: str) -> None:
        """STOW-RS inferred from OPTIONS (a method that changes nothing): Allow lists POST."""
        resp = await self._get(client, obs, f"{root}/studies", accept=ACCEPT_JSON, method="OPTIONS")
        if resp is None or not resp.ok:
            return
        allow = {m.strip().upper() for m in resp.headers.get("allow", "").split(",")}
        if "POST" in allow:
            obs.writable = True
            obs.notes.append(f"writable inferred: OPTIONS {root}/studies allows POST (STOW-RS, not tried)")


def _auth_required(obs: _Observation, resp: WebResponse) -> None:
    realm = fp.www_authenticate(resp.headers.get("www-authenticate")) or fp.login_redirect(
        resp.headers.get("location"))
    if obs.auth != "open":
        obs.auth = "auth-required"
        obs.realm = obs.realm or realm


def _settle_auth(obs: _Observation) -> None:
    """The record's auth is the data API's when one answered, else what the pages showed."""
    if obs.auth is None and obs.page_auth is not None:
        obs.auth, obs.realm = obs.page_auth
    if obs.auth is None and obs.dicomweb.open:
        obs.auth = "open"


def _fill(record: Record, obs: _Observation, client: WebClient) -> None:
    record.status = Status.SUCCESS
    record.service = "http"
    record.transport = "tls" if client.scheme == "https" else "tcp"
    record.tls = client.tls  # also on the record itself, where DICOM TLS facts are: one place to look
    record.product = obs.product
    record.http = HttpFacts(
        url=obs.url,
        status_code=obs.status_code,
        product=obs.product,
        auth=obs.auth,
        realm=obs.realm,
        patients=obs.counts.get("patients"),
        studies=obs.counts.get("studies"),
        series=obs.counts.get("series"),
        instances=obs.counts.get("instances"),
        dicomweb=obs.dicomweb,
        writable=obs.writable,
        title=obs.title,
        components=list(dict.fromkeys(obs.components)),
        backends=list(dict.fromkeys(obs.backends)),
        default_credentials_tried=obs.default_credentials_tried,
        tls=client.tls,
    )
    notes = list(dict.fromkeys(obs.notes))
    record.detail = "; ".join(notes) or None
