"""RDAP (RFC 9082 queries, RFC 9083 responses) for addresses and AS numbers, with the
IANA-style bootstrap (RFC 9224) from a configurable base URL.

The bootstrap base defaults to IANA's published files, and a test points it at a server on
loopback. Parsing is pure (JSON in, facts out); the client adds the per-server rate limit and
honours 429 Retry-After once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pacswatch.attribution import facts as F
from pacswatch.attribution import httpfetch
from pacswatch.attribution.entry import mailbox
from pacswatch.attribution.ratelimit import PerServerLimiter
from pacswatch.text import clean

if TYPE_CHECKING:
    import httpx

DEFAULT_BOOTSTRAP = "https://data.iana.org/rdap/"
MAX_BYTES = 1 << 20  # RDAP answers are a few kB; a megabyte (decoded) is not an answer


class RdapError(Exception):
    pass


@dataclass(frozen=True)
class RdapConfig:
    bootstrap_url: str = DEFAULT_BOOTSTRAP
    server: str | None = None  # one RDAP base URL for everything: skips the bootstrap
    timeout: float = 15.0  # the deadline of one lookup (bootstrap, query, one 429 retry), not per read
    min_interval: float = 1.0  # seconds between requests to one server
    max_retry_after: float = 60.0
    ttl_s: int = 7 * 86400  # registry data changes slowly
    user_agent: str = "pacswatch attribution"


def pick_server(bootstrap: dict[str, Any], key: str) -> str | None:
    """The base URL that serves `key` (an address, or an AS number as digits) in an RFC 9224
    bootstrap file: the most specific matching entry; an https URL is preferred."""
    best: tuple[int, str] | None = None
    for entry, urls in bootstrap.get("services", []):
        url = next((u for u in urls if u.startswith("https://")), urls[0] if urls else None)
        if url is None:
            continue
        for item in entry:
            size = _match_size(item, key)
            if size is not None and (best is None or size < best[0]):
                best = (size, url)
    return None if best is None else (best[1] if best[1].endswith("/") else best[1] + "/")


def _match_size(item: str, key: str) -> int | None:
    if key.isdigit():
        low, _, high = item.partition("-")
        if low.isdigit() and int(low) <= int(key) <= int(high or low):
            return int(high or low) - int(low)
        return None
    try:
        net = ipaddress.ip_network(item, strict=False)
        addr = ipaddress.ip_address(key)
    except ValueError:
        return None
    return net.num_addresses if addr.version == net.version and addr in net else None


def _vcard(entity: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    card = entity.get("vcardArray")
    if isinstance(card, list) and len(card) == 2 and isinstance(card[1], list):
        for prop in card[1]:
            if isinstance(prop, list) and len(prop) >= 4 and isinstance(prop[3], str):
                out.setdefault(str(prop[0]).lower(), []).append(prop[3])
    return out


def _entities(obj: dict, depth: int = 0):
    """Every entity, nested ones included (ARIN nests the abuse contact in the organisation)."""
    if depth > 4:
        return
    for entity in obj.get("entities") or []:
        if isinstance(entity, dict):
            yield entity
            yield from _entities(entity, depth + 1)


def _text(value: Any) -> str | None:
    """A registry's string as one clean line (None stays None)."""
    return None if value is None else clean(value)


def parse_network(data: dict, *, subject: str, source: str, now: datetime, ttl_s: int) -> list[F.Fact]:
    """Facts from an ip network object. Every string is cleaned here, where it enters; an e-mail
    address that is not exactly one plain address is dropped with a NOTE fact saying so."""
    if data.get("objectClassName") != "ip network":
        raise RdapError(f"not an RDAP ip network object: '{clean(data.get('objectClassName'), 60)}'")
    detail = {"handle": _text(data.get("handle")), "start": _text(data.get("startAddress")),
              "end": _text(data.get("endAddress")), "country": _text(data.get("country")),
              "cidr": [clean(f"{c.get('v4prefix') or c.get('v6prefix')}/{c.get('length')}", 64)
                       for c in _list(data.get("cidr0_cidrs")) if isinstance(c, dict)]}
    fact = lambda kind, value, **d: F.Fact(subject, kind, value, source, now, d, ttl_s)
    out = [fact(F.RDAP_NETWORK, clean(data.get("name") or data.get("handle") or "?"), **detail)]
    if data.get("country"):
        out.append(fact(F.RDAP_COUNTRY, clean(data["country"], 8)))
    seen: set[tuple[str, str]] = set()
    for entity in _entities(data):
        roles = [clean(r, 40).lower() for r in _list(entity.get("roles"))]
        handle = _text(entity.get("handle"))
        card = _vcard(entity)
        if "registrant" in roles and card.get("fn"):
            org = clean(card["fn"][0])
            if (F.RDAP_ORG, org) not in seen:
                seen.add((F.RDAP_ORG, org))
                out.append(fact(F.RDAP_ORG, org, handle=handle))
        for raw in card.get("email", []):
            try:
                email = mailbox(raw).lower()
            except ValueError as exc:
                out.append(fact(F.NOTE, "rdap", note=f"contact of {handle or 'an entity'} dropped: {exc}"))
                continue
            kind = F.RDAP_ABUSE if "abuse" in roles else F.RDAP_CONTACT
            if (kind, email) not in seen:
                seen.add((kind, email))
                out.append(fact(kind, email, roles=roles, handle=handle))
    for asn in _list(data.get("arin_originas0_originautnums")):
        if isinstance(asn, int) or (isinstance(asn, str) and asn.isdigit()):
            out.append(fact(F.ASN, str(int(asn)), via="rdap"))
    return out


def _list(value: Any) -> list:
    """A JSON member that should be an array, or an empty one (a string would be iterated by
    character)."""
    return value if isinstance(value, list) else []


def parse_autnum(data: dict, *, subject: str, source: str, now: datetime, ttl_s: int) -> list[F.Fact]:
    if data.get("objectClassName") != "autnum":
        raise RdapError(f"not an RDAP autnum object: '{clean(data.get('objectClassName'), 60)}'")
    holder = data.get("name")
    for entity in _entities(data):
        if "registrant" in _list(entity.get("roles")) and _vcard(entity).get("fn"):
            holder = _vcard(entity)["fn"][0]
            break
    if not holder:
        return []
    return [F.Fact(subject, F.ASN_HOLDER, clean(holder), source, now, {"handle": _text(data.get("handle"))}, ttl_s)]


class RdapClient:
    def __init__(self, config: RdapConfig, client: httpx.AsyncClient, limiter: PerServerLimiter | None = None) -> None:
        self.config = config
        self.client = client
        self.limiter = limiter or PerServerLimiter(config.min_interval)
        self._bootstrap: dict[str, dict] = {}
        self._bootstrap_locks: dict[str, asyncio.Lock] = {}
        self.requests: list[str] = []  # URLs asked, in order (reports; tests count them)

    async def _get_json(self, url: str) -> dict:
        """The JSON object at `url`: bounded (httpfetch.py: decoded bytes capped while decoding,
        same-origin redirects only); the caller's deadline bounds the whole lookup."""
        server = urlsplit(url).netloc
        for attempt in range(2):
            async with self.limiter.slot(server):
                self.requests.append(url)
                try:
                    response = await httpfetch.get(self.client, url, max_bytes=MAX_BYTES, read_timeout=self.config.timeout,
                                                   headers={"Accept": "application/rdap+json",
                                                            "User-Agent": self.config.user_agent})
                except httpfetch.FetchError as exc:
                    raise RdapError(f"{url}: {exc}") from exc
            if response.status == 429 and attempt == 0:
                wait = _retry_after(response.headers.get("retry-after"), self.config.max_retry_after)
                self.limiter.hold_off(server, wait)
                continue
            if response.status == 404:
                raise RdapError(f"{url}: not found")
            if response.status != 200:
                raise RdapError(f"{url}: HTTP {response.status}")
            try:
                data = json.loads(response.body)
            except (ValueError, RecursionError) as exc:  # RecursionError: nesting a megabyte deep
                raise RdapError(f"{url}: not JSON") from exc
            if not isinstance(data, dict):
                raise RdapError(f"{url}: not a JSON object")
            return data
        raise RdapError(f"{url}: rate-limited (429)")

    async def _server_for(self, key: str, registry: str) -> str:
        if self.config.server:
            return self.config.server.rstrip("/") + "/"
        # One fetch per registry: the addresses attributed at once wait for it instead of each
        # asking IANA for the same file (8 fetches, 1 s apart under the per-server spacing, ate
        # into the first lookups' deadlines). A failed fetch is tried again by the next waiter.
        async with self._bootstrap_locks.setdefault(registry, asyncio.Lock()):
            if registry not in self._bootstrap:
                base = self.config.bootstrap_url.rstrip("/") + "/"
                self._bootstrap[registry] = await self._get_json(base + f"{registry}.json")
        server = pick_server(self._bootstrap[registry], key)
        if server is None:
            raise RdapError(f"no RDAP server for {key} in the {registry} bootstrap")
        return server

    async def network(self, ip: str, now: datetime) -> list[F.Fact]:
        version = ipaddress.ip_address(ip).version
        server = await self._server_for(ip, f"ipv{version}")
        data = await self._get_json(f"{server}ip/{ip}")
        return parse_network(data, subject=ip, source=f"rdap:{server}", now=now, ttl_s=self.config.ttl_s)

    async def autnum(self, asn: str, subject: str, now: datetime) -> list[F.Fact]:
        server = await self._server_for(asn, "asn")
        data = await self._get_json(f"{server}autnum/{asn}")
        return parse_autnum(data, subject=subject, source=f"rdap:{server}", now=now, ttl_s=self.config.ttl_s)


def _retry_after(value: str | None, cap: float) -> float:
    try:
        return min(cap, max(0.0, float(value))) if value else 1.0
    except ValueError:
        return 1.0  # an HTTP date: rare for RDAP; wait a little rather than parse it
