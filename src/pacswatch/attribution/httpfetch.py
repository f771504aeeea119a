"""One bounded HTTP GET for attribution (RDAP, security.txt): the body is capped in *decoded*
bytes while it is decoded, at most one compression layer is undone, and redirects are followed
only on the same origin.

httpx, left to itself, undoes every layer a server lists (`Content-Encoding: gzip, gzip`) and
only then hands over bytes, so a 1.8 KB answer became gigabytes in memory before any size check
could run. Here the raw bytes are read (`aiter_raw`) and decoded by zlib with an output limit, so
memory stays at the cap whatever the server sends. The overall deadline is the caller's: a
lookup wraps all its requests in one `asyncio.timeout` (attributor.py), since a per-read timeout
lets a server that drips a byte at a time hold a lookup for ever.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from pacswatch.text import clean

if TYPE_CHECKING:
    import httpx

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What we ask for and what we undo: one gzip or deflate layer. "x-gzip" is gzip's old name
# (RFC 9110 8.4.1.3).
ACCEPT_ENCODING = "gzip, deflate"
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


class FetchError(Exception):
    """The answer was refused (too large, an unknown or stacked coding, a redirect off the origin,
    a transport error); the message is a note for the provenance, with the peer's text cleaned."""


@dataclass(frozen=True)
class Fetched:
    url: str  # the URL that answered, after same-origin redirects (with the name, not the address)
    status: int
    headers: Mapping[str, str]  # case-insensitive (httpx.Headers)
    body: bytes  # decoded, at most the cap

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def coding(content_encoding: str | None) -> str | None:
    """The one coding to undo (None: the body is as sent), or FetchError for a list of codings
    (each layer multiplies what a small answer becomes) or one we do not know (pure)."""
    layers = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    layers = [c for c in layers if c != "identity"]
    if not layers:
        return None
    if len(layers) > 1:
        raise FetchError(f"refused: Content-Encoding '{clean(content_encoding, 60)}' stacks "
                         f"{len(layers)} codings (at most one is undone)")
    if layers[0] not in _WBITS:
        raise FetchError(f"refused: unknown Content-Encoding '{clean(layers[0], 40)}'")
    return layers[0]


class BoundedBody:
    """Collects a body from raw chunks, undoing at most one coding, and raises FetchError as soon
    as the raw or the decoded size passes `max_bytes` (pure: bytes in, bytes out)."""

    def __init__(self, name: str | None, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._zlib = zlib.decompressobj(_WBITS[name]) if name else None
        self._raw = 0
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        # Raw bytes are capped too: empty deflate blocks decode to nothing, for ever.
        self._raw += len(chunk)
        if self._raw > self.max_bytes:
            raise FetchError(f"refused: more than {self.max_bytes} bytes on the wire")
        if self._zlib is None:
            self._add(chunk)
            return
        if self._zlib.eof:
            if chunk:
                raise FetchError("refused: data after the end of the compressed body")
            return
        try:
            # max_length bounds what this call may produce; zlib only keeps unconsumed input when
            # it reached that bound, and then the cap is passed anyway.
            out = self._zlib.decompress(chunk, self.max_bytes - self._size + 1)
        except zlib.error as exc:
            raise FetchError(f"refused: the compressed body is damaged ({exc})") from exc
        self._add(out)
        if self._zlib.unused_data:
            raise FetchError("refused: data after the end of the compressed body")

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_bytes:
            raise FetchError(f"refused: larger than {self.max_bytes} bytes once decoded")
        if data:
            self._parts.append(data)

    def body(self) -> bytes:
        if self._zlib is not None and not self._zlib.eof:
            raise FetchError("refused: the compressed body is cut short")
        return b"".join(self._parts)


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def same_origin(a: str, b: str) -> bool:
    """Scheme, host and port equal (RFC 6454); a redirect elsewhere is not followed (pure)."""
    return origin(a) == origin(b)


def _request_url(url: str, address: str | None) -> str:
    """`url` with its host replaced by `address` (the port kept): where to connect, so no name
    is resolved by the HTTP client."""
    if address is None:
        return url
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


async def get(client: httpx.AsyncClient, url: str, *, max_bytes: int, address: str | None = None,
              headers: dict[str, str] | None = None, max_redirects: int = MAX_REDIRECTS,
              read_timeout: float = 10.0) -> Fetched:
    """GET `url`, connecting to `address` when given (with the URL's host as Host header and TLS
    server name), following at most `max_redirects` redirects on the same origin.

    Raises FetchError for every refusal and transport failure. The caller sets the overall
    deadline; `read_timeout` only bounds each single wait below it."""
    import httpx

    for _ in range(max_redirects + 1):
        host = urlsplit(url).hostname or ""
        request_headers = {"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        extensions = {}
        if address is not None:
            request_headers["Host"] = host
            extensions["sni_hostname"] = host
        try:
            async with client.stream("GET", _request_url(url, address), headers=request_headers,
                                     timeout=read_timeout, extensions=extensions) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(f"HTTP {response.status_code} without a Location")
                    try:
                        target = urljoin(url, location)
                        same = same_origin(url, target)
                    except ValueError:  # "http://[oops/", a port past 65535
                        raise FetchError(f"redirect to a malformed Location not followed: "
                                         f"'{clean(location, 120)}'") from None
                    if not same:
                        raise FetchError(f"redirect to another origin not followed: {clean(target, 120)}")
                    url = target
                    continue
                body = BoundedBody(coding(response.headers.get("content-encoding")), max_bytes)
                async for chunk in response.aiter_raw():
                    body.feed(chunk)
                return Fetched(url, response.status_code, response.headers, body.body())
        # InvalidURL is not an HTTPError: a URL httpx refuses (from a bootstrap file, a same-origin
        # Location) is the server's mistake too.
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise FetchError(f"{type(exc).__name__}: {clean(exc, 120) or 'no detail'}") from exc
    raise FetchError(f"more than {max_redirects} redirects")
