"""An HTTP client for one origin (scheme, IP, port) with the scanner's rules built in.

- Absolute deadlines per request and per endpoint: httpx's timeouts are per read, so a peer
  dripping one byte a second would never trip them (docs/dicom-reference.md §7.2).
- Bodies are streamed and cut at BODY_CAP; no compression is asked for, and a compressed body
  sent anyway is inflated only up to the cap (a small gzip bomb cannot grow in memory).
- Redirects are followed by hand, same origin only, at most MAX_REDIRECTS: a redirect to
  another host or port is reported, never followed.
- Every new TCP connection takes a token from the scan's rate limiter.
- Failures become NetError with a status of the closed vocabulary; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpcore
import httpx
# Imported here, at startup, not for our use: httpcore imports it on every request and response
# close, and an import not yet done searches sys.path, listing directories (a descriptor each).
# Under a descriptor shortage that failed requests whose answer had come with "Too many open
# files"; imported once, it is found in sys.modules without touching the file system.
import sniffio  # noqa: F401

from pacswatch.net.errors import LocalNetError, NetError, PeerNetError, map_os_error
from pacswatch.net.fdlimit import connect_when_free
from pacswatch.net.limits import RateLimiter
from pacswatch.record import TlsFacts
from pacswatch.status import Status

BODY_CAP = 256 * 1024
MAX_REDIRECTS = 3
# h11 refuses a response head over httpcore's 100 KiB limit; the peer did speak HTTP.
HEAD_TOO_LARGE = "response head larger than 100 KiB"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
ACCEPT_HTML = "text/html, */*"
ACCEPT_JSON = "application/json"
ACCEPT_DICOM_JSON = "application/dicom+json"  # QIDO-RS (PS3.18); Orthanc logs an error on lists


@dataclass
class WebResponse:
    url: str  # where the answer came from, after same-origin redirects
    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool = False
    redirects: int = 0
    offsite_location: str | None = None  # a redirect to another origin, not followed
    malformed_location: str | None = None  # a redirect to no valid URL, not followed (peer's text)
    too_many_redirects: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_html(self) -> bool:
        kind = self.headers.get("content-type", "").lower()
        return "html" in kind or (not kind and self.body.lstrip()[:1] == b"<")

    def text(self) -> str:
        charset = "utf-8"
        kind = self.headers.get("content-type", "")
        if "charset=" in kind.lower():
            charset = kind.lower().split("charset=", 1)[1].split(";")[0].strip(" \t\"'") or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except (LookupError, UnicodeError, ValueError, TypeError):
            # The peer names the charset, and Python's codec registry holds more than charsets:
            # unknown names (LookupError), "undefined" (raises on any use), "idna" (refuses
            # errors="replace"), "base64"/"rot13" (not text encodings). UTF-8 with replacement
            # decodes any bytes.
            return self.body.decode("utf-8", errors="replace")


class _Stream(httpcore.AsyncNetworkStream):
    """A connection that tells its backend when a TLS handshake is under way, so a deadline
    passing then is reported as a TLS failure, not as a silent HTTP server."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, backend: "_LimitedBackend") -> None:
        self._inner, self._backend = inner, backend

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.AsyncNetworkStream:
        self._backend.handshaking = True
        try:
            stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except asyncio.CancelledError:
            raise  # our deadline: _once reads `handshaking` to name the failure
        except BaseException:
            self._backend.handshaking = False  # failed on its own: httpx reports it
            raise
        self._backend.handshaking = False
        return stream  # httpcore reads ssl_object from it (get_extra_info)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _LimitedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, taking a rate-limiter token before each TCP connect."""

    def __init__(self, limiter: RateLimiter | None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._limiter = limiter
        self.connects = 0  # connections attempted
        self.connected = 0  # connections established
        self.handshaking = False  # a TLS handshake has started and not finished
        # The running request's timer (WebClient._once), held while we connect (_held).
        self.timer: asyncio.Timeout | None = None
        self.latest = float("inf")  # ... but never past the probe's own deadline
        self.waiting_for: str | None = None  # what of ours we wait for now; _once reports it

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """The request's timer is about the peer, and a connect holds waits of ours (a rate-limit
        token, a free descriptor), while the connect itself is timed by httpcore's connect
        timeout from when it is issued. So the timer is held at the probe's deadline meanwhile
        and moved on by the time taken. Before, 200 web probes at once under 64 descriptors on a
        loaded machine spent their 5 s request timeout waiting for a descriptor (the failed
        attempts as well as the pauses between them), and up to a tenth of them reported the
        server as a connection timeout."""
        loop = asyncio.get_running_loop()
        timer, asked = self.timer, loop.time()
        when = timer.when() if timer is not None else None
        if timer is not None:
            timer.reschedule(self.latest if self.latest != float("inf") else None)
        # No `finally`: when the probe's deadline passes here, `waiting_for` stays set for _once
        # to report, and an expired timer cannot be moved.
        yield
        self.waiting_for = None
        if timer is not None and when is not None:
            timer.reschedule(min(when + loop.time() - asked, self.latest))

    def _short_of_descriptors(self) -> None:
        # From the first shortage to the connect: a deadline passing then is ours to report.
        self.waiting_for = "a free file descriptor"

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        async with self._held():
            if self._limiter is not None:
                self.waiting_for = "a rate-limit token"
                await self._limiter.acquire(asyncio.get_running_loop(), ip=host)  # the host is the address we scan, never a name
                self.waiting_for = None
            self.connects += 1
            # No descriptor free is not the server's doing: wait for one (net/fdlimit.py;
            # httpcore's ConnectError carries the EMFILE as its cause).
            stream = await connect_when_free(
                lambda: self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                socket_options=socket_options),
                self._short_of_descriptors)
        self.connected += 1
        return _Stream(stream, self)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not scanned")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, ssl_context: ssl.SSLContext, backend: _LimitedBackend) -> None:
        super().__init__(verify=ssl_context, trust_env=False, retries=0)
        # httpx's transport takes no network backend, httpcore's pool does: replace the pool
        # (the one attribute httpx's handle_async_request uses) so the limiter sees every connect.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,  # one request at a time per endpoint; keep-alive reuses it
            max_keepalive_connections=1,
            # Below Orthanc's 1 s Keep-Alive timeout: never send on a connection being closed.
            keepalive_expiry=0.9,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )


class WebClient:
    """Requests to one origin before an absolute endpoint deadline (loop time)."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        user_agent: str,
        timeout: float,
        deadline: float,
        ssl_context: ssl.SSLContext,
        limiter: RateLimiter | None = None,
        describe_tls: Callable[[object], TlsFacts] | None = None,
    ) -> None:
        self.scheme = scheme
        self.host = host.strip("[]")
        self.port = port
        netloc = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        self.origin = f"{scheme}://{netloc}"
        self.timeout = timeout
        self.deadline = deadline
        self.requests = 0
        # TLS facts of the first TLS connection, taken while it is open (see _once).
        self.tls: TlsFacts | None = None
        self._describe_tls = describe_tls
        self._backend = _LimitedBackend(limiter)
        self._transport = _Transport(ssl_context, self._backend)
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # no proxies, netrc or certificates from the environment
            headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
        )

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._client.aclose(), 2.0)
        except Exception:  # closing a broken connection teaches nothing
            pass

    def url(self, target: str) -> str:
        return self.origin + (target if target.startswith("/") else "/" + target)

    def same_origin(self, url: str) -> bool:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError):
            return False
        return (parsed.scheme == self.scheme and (parsed.host or "") == self.host
                and (parsed.port or (443 if parsed.scheme == "https" else 80)) == self.port)

    async def get(self, target: str, *, accept: str = ACCEPT_HTML, auth: tuple[str, str] | None = None,
                  method: str = "GET") -> WebResponse:
        """GET `target` on this origin, following same-origin redirects; NetError on failure."""
        headers = {"Accept": accept}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        url = self.url(target)
        hops = 0
        while True:
            response = await self._once(method, url, headers)
            response.redirects = hops
            location = response.headers.get("location")
            if response.status not in _REDIRECTS or not location or method != "GET":
                return response
            next_url = join_url(url, location)
            if next_url is None:
                response.malformed_location = location  # a fact about the peer, not a failure
                return response
            if not self.same_origin(next_url):
                response.offsite_location = next_url
                return response
            if hops == MAX_REDIRECTS:
                response.too_many_redirects = True
                return response
            hops += 1
            url = next_url

    async def _once(self, method: str, url: str, headers: dict[str, str]) -> WebResponse:
        loop = asyncio.get_running_loop()
        deadline = min(loop.time() + self.timeout, self.deadline)
        connects, connected = self._backend.connects, self._backend.connected
        self.requests += 1
        try:
            async with asyncio.timeout_at(deadline) as timer:
                self._backend.timer, self._backend.latest = timer, self.deadline
                self._backend.waiting_for = None
                request = self._client.build_request(method, url, headers=headers)
                # Straight to the transport, not through the client's send: the client parses a
                # redirect's Location before handing the response back and raises on one it
                # cannot parse (backslashes, a bad port), losing the whole answer. Redirects are
                # followed by hand in get(), which judges the Location itself.
                response = await self._transport.handle_async_request(request)
                response.request = request
                self._keep_cookies(response)
                try:
                    body, truncated = await _read_capped(response)
                    self._note_tls(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            # Where the deadline caught us: a wait of ours (only the probe's deadline ends one),
            # a TCP connect, a TLS handshake, or the HTTP exchange.
            if self._backend.waiting_for is not None:
                what, self._backend.waiting_for = self._backend.waiting_for, None
                raise LocalNetError(Status.ERROR, f"endpoint deadline passed waiting for {what}") from None
            if self._backend.handshaking:
                self._backend.handshaking = False
                raise PeerNetError(Status.TLS_ERROR, "TLS handshake timed out") from None
            stuck = self._backend.connects > connects and self._backend.connected == connected
            raise PeerNetError(Status.CONNECTION_TIMEOUT if stuck else Status.IO_TIMEOUT,
                           "no complete answer before the deadline") from None
        except Exception as exc:
            raise http_error(exc, tcp_established=self._backend.connected > connected) from None
        finally:
            self._backend.timer = None  # an exited timer cannot be moved; the next request sets its own
        return WebResponse(url, response.status_code, response.headers, body, truncated=truncated)

    def _keep_cookies(self, response: httpx.Response) -> None:
        """Cookies set by the origin go back to it on the next request, as the client's send
        did: some servers and load balancers redirect to the same page until a cookie returns."""
        try:
            self._client.cookies.extract_cookies(response)
        except Exception:  # a Set-Cookie too odd to parse is not kept; the answer still counts
            pass

    def _note_tls(self, response: httpx.Response) -> None:
        if self.tls is not None or self._describe_tls is None:
            return
        network = response.extensions.get("network_stream")
        ssl_object = network.get_extra_info("ssl_object") if network is not None else None
        if ssl_object is None:
            return
        try:
            self.tls = self._describe_tls(ssl_object)
        except Exception as exc:  # a certificate too odd to describe is a fact, not a failed scan
            self.tls = TlsFacts(handshake=True, error=f"certificate not described: {type(exc).__name__}")


def join_url(base: str, reference: str) -> str | None:
    """`reference` (a peer's Location or link) resolved against `base`, or None when it makes no
    valid URL: a peer's malformed URL is a fact to report, never an exception."""
    try:
        return str(httpx.URL(base).join(reference))
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
        return None


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """At most BODY_CAP bytes of the body (after any content-encoding), and whether it was cut."""
    encoding = response.headers.get("content-encoding", "").lower().strip()
    inflater = None
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, detected
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        data = raw
        if inflater is not None:
            try:
                data = inflater.decompress(raw, BODY_CAP - size + 1)
            except zlib.error:
                return b"".join(chunks), True  # garbage compression: keep what we have
        chunks.append(data)
        size += len(data)
        if size > BODY_CAP or (inflater is not None and inflater.unconsumed_tail):
            return b"".join(chunks)[:BODY_CAP], True
    return b"".join(chunks), False


def http_error(exc: BaseException, *, tcp_established: bool = False) -> NetError:
    """Map an httpx/httpcore exception to the closed status vocabulary.

    The OS or ssl error at the root of the chain decides, through net.errors (the one place
    that maps OS errors); httpx's own classes decide when there is none. httpx reports TCP
    connect and TLS handshake failures alike as ConnectError: `tcp_established` (a new TCP
    connection completed during the request) tells them apart."""
    if isinstance(exc, NetError):  # ours already (a refused connect): its status stands
        return exc
    root = _root_cause(exc)
    connect_phase = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    handshake = connect_phase and tcp_established
    if isinstance(exc, httpx.ConnectTimeout):
        if handshake:
            return PeerNetError(Status.TLS_ERROR, "TLS handshake timed out")
        return PeerNetError(Status.CONNECTION_TIMEOUT, "connect timed out")
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return PeerNetError(Status.IO_TIMEOUT, "peer stopped answering")
    if isinstance(root, (ssl.SSLError, OSError)) and not isinstance(root, TimeoutError):
        error = map_os_error(root, connecting=connect_phase and not handshake)
        if handshake and error.status is Status.PROTOCOL_ERROR:  # reset or close mid-handshake
            error = PeerNetError(Status.TLS_ERROR, f"handshake failed: {error.detail}")
        return error
    if handshake:
        return PeerNetError(Status.TLS_ERROR, f"handshake failed: {str(exc)[:160]}")
    if isinstance(exc, httpx.RemoteProtocolError) and "Receive buffer too long" in str(exc):
        return PeerNetError(Status.PROTOCOL_ERROR, HEAD_TOO_LARGE)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError)):
        return PeerNetError(Status.PROTOCOL_ERROR, f"not HTTP as expected: {str(exc)[:160]}")
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.ConnectError)):
        return PeerNetError(Status.PROTOCOL_ERROR, f"connection failed: {str(exc)[:160]}")
    return LocalNetError(Status.ERROR, f"{type(exc).__name__}: {str(exc)[:160]}")


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc
