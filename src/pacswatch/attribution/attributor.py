"""Gather facts for addresses (DNS, RDAP, the ASN table, security.txt), through the cache, and
decide with owner.decide. The only part of attribution that does I/O; every decision is pure.

Everything here is bounded, since the servers asked are chosen by the owners of what we found
(their reverse zone, their registry entry, their web server): each lookup (PTR, RDAP,
security.txt) has one overall deadline, each address one deadline for all of its lookups, and a
pass runs at most `concurrency` addresses at once, so a pass over N addresses ends within
ceil(N / concurrency) address deadlines whatever the servers do. A security.txt is only asked of
an address that the blocklist, the opt-out list and the scope allow (`may_contact`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Self

from pacswatch.attribution import dns as D
from pacswatch.attribution import facts as F
from pacswatch.attribution import securitytxt
from pacswatch.attribution.asn import AsnTable
from pacswatch.attribution.cache import FactCache, MemoryCache, expiry
from pacswatch.attribution.cloud import Provider, load_providers
from pacswatch.attribution.local import LocalOwner
from pacswatch.attribution.owner import Attribution, confirmed_names, decide
from pacswatch.attribution.rdap import (
    DEFAULT_BOOTSTRAP,
    RdapClient,
    RdapConfig,
    RdapError,
)
from pacswatch.targets import Blocklist
from pacswatch.text import clean

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class AttributionConfig:
    resolver: D.ResolverConfig = field(default_factory=D.ResolverConfig)
    rdap: RdapConfig = field(default_factory=RdapConfig)
    asn_table: str | None = None  # pyasn ipasn-format file
    cloud_table: str | None = None  # extra providers (cloud_providers.json shape)
    security_txt: bool = True
    security_txt_scheme: str = "https"
    security_txt_port: int | None = None  # None: the scheme's default
    security_txt_ttl_s: int = 86400
    security_txt_timeout: float = 10.0  # the deadline of one domain's lookup: A/AAAA, both paths, redirects
    address_deadline_s: float = 60.0  # all the lookups of one address
    negative_ttl_s: int = 3600
    error_ttl_s: int = 600
    concurrency: int = 8
    # Attribute a scan's exposed addresses when it ends (`scan`, `run`); at most this many per
    # scan, so a large scan does not sit for hours behind RDAP's rate limits (the rest: `attribute`).
    after_scans: bool = True
    after_scans_max: int = 200
    # ... and they are done by then: the addresses left are attributed by the next `attribute`.
    after_scans_deadline_s: float = 300.0


class Attributor:
    def __init__(self, config: AttributionConfig, *, cache: FactCache | None = None,
                 local: Iterable[LocalOwner] = (), http: httpx.AsyncClient | None = None,
                 asn_table: AsnTable | None = None, providers: tuple[Provider, ...] | None = None,
                 clock: Callable[[], datetime] = F.utcnow,
                 may_contact: Callable[[str], str | None] | None = None) -> None:
        """`may_contact(address)` says why an address must not be connected to (None: it may);
        by default the default blocklist. Callers with a database pass its opt-outs and scope."""
        self.config = config
        self.may_contact = may_contact or Blocklist.default().reason_for
        self.cache = cache if cache is not None else MemoryCache()
        self.local = list(local)
        self._http = http
        self._own_http = http is None
        self.asn_table = asn_table if asn_table is not None else (
            AsnTable.load(config.asn_table) if config.asn_table else AsnTable())
        self.providers = providers if providers is not None else load_providers(config.cloud_table)
        self.clock = clock
        self._resolver = None
        self._rdap: RdapClient | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[list[F.Fact]]] = {}  # lookups under way

    async def __aenter__(self) -> Self:
        if self.dns_configured:
            self.resolver()  # a bad resolver configuration is the user's to fix: say so now
        return self

    @property
    def dns_configured(self) -> bool:
        """DNS is only used when the user named a resolver or allowed the system's: without
        one, PTR and security.txt are skipped and the rest (local table, RDAP) still works."""
        return bool(self.config.resolver.nameservers or self.config.resolver.system)

    async def __aexit__(self, *exc) -> None:
        # A lookup left running by an address that hit its deadline ends here, before its client.
        running = list(self._pending.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        """Made on first use: attributing local and special addresses (a lab, a test range, an
        owners table) asks nothing over HTTP, and httpx costs a quarter second to load."""
        if self._http is None:
            import httpx

            # trust_env=False: no proxy from the environment; follow no redirects (an RDAP or
            # security.txt redirect off to another host is not followed blindly).
            self._http = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._http

    @property
    def rdap(self) -> RdapClient:
        if self._rdap is None:
            self._rdap = RdapClient(self.config.rdap, self.http)
        return self._rdap

    def resolver(self):
        if self._resolver is None:
            self._resolver = D.make_resolver(self.config.resolver)
        return self._resolver

    async def _cached(self, subject: str, group: str, fetch: Callable[[datetime], Awaitable[list[F.Fact]]],
                      refresh: bool, deadline: float) -> list[F.Fact]:
        now = self.clock()
        if not refresh:
            entry = self.cache.get(subject, group, now)
            if entry is not None:
                return list(entry.facts)
        # The addresses of one owner share domains and AS numbers: a lookup under way is awaited,
        # not started again (a dripping server gets one connection, not one per address).
        key = (subject, group)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup(subject, group, fetch, now, deadline))
            self._pending[key] = task
            task.add_done_callback(lambda _task: self._pending.pop(key, None))
        # Shielded: one address reaching its own deadline must not cancel what others await.
        return list(await asyncio.shield(task))

    async def _lookup(self, subject: str, group: str, fetch: Callable[[datetime], Awaitable[list[F.Fact]]],
                      now: datetime, deadline: float) -> list[F.Fact]:
        try:
            async with asyncio.timeout(deadline):
                found = await fetch(now)
        except TimeoutError:
            found = [self._error(subject, group, now, f"no answer within the lookup's {deadline:g} s deadline")]
        # A registry's or a web server's answer of an unexpected shape is its error, not ours.
        except (RdapError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            found = [self._error(subject, group, now, clean(exc, 300))]
        self.cache.put(subject, group, found, now, expiry(found, now, self.config.negative_ttl_s))
        return found

    def _error(self, subject: str, group: str, now: datetime, error: str) -> F.Fact:
        return F.Fact(subject, F.ERROR, group, group, now, {"error": error}, self.config.error_ttl_s)

    async def facts_for(self, ip: str, *, refresh: bool = False) -> list[F.Fact]:
        """The facts about `ip`; what was learned before the address's deadline is kept, with an
        error fact saying the rest was cut off."""
        out: list[F.Fact] = []
        deadline = self.config.address_deadline_s
        try:
            async with asyncio.timeout(deadline):
                await self._gather(ip, out, refresh)
        except TimeoutError:
            out.append(self._error(ip, "attribution", self.clock(),
                                   f"stopped at the {deadline:g} s deadline of one address; the rest is asked next time"))
        return out

    async def _gather(self, ip: str, out: list[F.Fact], refresh: bool) -> None:
        cfg = self.config
        # The resolver's timeout bounds each query; a PTR lookup makes up to nine (PTR, then A and
        # AAAA of up to four names), so its deadline allows two timeouts and no more.
        dns_deadline = 2 * cfg.resolver.timeout
        if self.dns_configured:
            out += await self._cached(ip, "dns", lambda now: D.reverse_facts(
                self.resolver(), ip, now=now, source=cfg.resolver.label(), ttl_s=cfg.resolver.ttl_s), refresh,
                dns_deadline)
        if self._public_rdap_knows(ip):
            out += await self._cached(ip, "rdap", lambda now: self.rdap.network(ip, now), refresh, cfg.rdap.timeout)
        match = self.asn_table.lookup(ip)
        now = self.clock()
        if match is not None:
            src = f"table:{cfg.asn_table or 'asn'}"
            out.append(F.Fact(ip, F.ASN, str(match.asn), src, now, {"prefix": match.prefix}, cfg.rdap.ttl_s))
            if match.holder:
                out.append(F.Fact(ip, F.ASN_HOLDER, match.holder, src, now, {}, cfg.rdap.ttl_s))
        asn = F.first_value(out, F.ASN)
        if asn and not F.of_kind(out, F.ASN_HOLDER):
            out += await self._cached(f"AS{asn}", "rdap", lambda now: self.rdap.autnum(asn, ip, now), refresh,
                                      cfg.rdap.timeout)
        if cfg.security_txt:
            for name in confirmed_names(out):
                for domain in securitytxt.candidate_domains(name):
                    found = await self._cached(domain, "security.txt", functools.partial(self._security_txt, domain),
                                               refresh, cfg.security_txt_timeout)
                    out += found
                    if any(f.kind == F.SECURITY_TXT for f in found):
                        break  # the most specific domain with a file speaks for the host

    def _public_rdap_knows(self, ip: str) -> bool:
        """No registry allocates loopback, private or documentation space: asking the public
        RDAP bootstrap about them is pointless traffic off the machine. A configured RDAP server
        or bootstrap (an internal registry, a test's) is asked about anything."""
        rdap = self.config.rdap
        if rdap.server is not None or rdap.bootstrap_url != DEFAULT_BOOTSTRAP:
            return True
        return ipaddress.ip_address(ip).is_global

    async def _security_txt(self, domain: str, now: datetime) -> list[F.Fact]:
        """The domain's security.txt as facts: a contact per kept Contact line, a NOTE for each
        line dropped and each address not asked (blocked, opted out, out of scope), an ERROR for
        each answer refused (too large, a stacked coding, a redirect elsewhere)."""
        cfg = self.config
        notes: list[F.Fact] = []

        def note(text: str, source: str = "security.txt") -> None:
            notes.append(F.Fact(domain, F.NOTE, "security.txt", source, now, {"note": text}, cfg.security_txt_ttl_s))

        for address in (await D.addresses(self.resolver(), domain))[:2]:
            # Checked before connecting: the domain's owner chose this address, and may have chosen
            # one we must not touch (an opted-out network, one outside the authorised scope).
            reason = self.may_contact(address)
            if reason is not None:
                note(f"{domain} resolves to {address}, not asked: {reason}")
                continue
            got = await securitytxt.fetch(self.http, domain, address, scheme=cfg.security_txt_scheme,
                                          port=cfg.security_txt_port, read_timeout=cfg.security_txt_timeout)
            notes += [self._error(domain, "security.txt", now, text) for text in got.notes]
            if got.text is None:
                continue
            try:
                parsed = securitytxt.parse(got.text)
            except securitytxt.SecurityTxtError as exc:
                return [*notes, F.Fact(domain, F.ERROR, "security.txt", got.url, now, {"error": clean(exc, 300)},
                                       cfg.error_ttl_s)]
            kept, dropped = securitytxt.checked_contacts(parsed.contacts)
            for text in dropped:
                note(text, f"security.txt:{got.url}")
            detail = {"domain": domain, "url": got.url, "languages": [clean(x, 35) for x in parsed.languages],
                      "policy": [clean(x) for x in parsed.policy], "signed": parsed.signed,
                      "expires": parsed.expires.isoformat() if parsed.expires else None}
            return [F.Fact(domain, F.SECURITY_TXT, contact, f"security.txt:{got.url}", now, {**detail, "order": i},
                           cfg.security_txt_ttl_s) for i, contact in enumerate(kept)] + notes
        return notes

    async def attribute(self, ip: str, *, refresh: bool = False) -> tuple[Attribution, list[F.Fact]]:
        facts = await self.facts_for(ip, refresh=refresh)
        return decide(ip, facts, local=self.local, providers=self.providers, now=self.clock()), facts

    async def attribute_many(self, ips: Iterable[str], *, refresh: bool = False, deadline: float | None = None
                             ) -> dict[str, tuple[Attribution, list[F.Fact]]]:
        """Attributions of `ips`, `concurrency` at a time. With a `deadline` (seconds), the
        addresses not done by then are stopped and left out of the result."""
        sem = asyncio.Semaphore(self.config.concurrency)
        results: dict[str, tuple[Attribution, list[F.Fact]]] = {}

        async def one(ip: str) -> None:
            async with sem:
                results[ip] = await self.attribute(ip, refresh=refresh)

        tasks = [asyncio.ensure_future(one(ip)) for ip in dict.fromkeys(ips)]
        if not tasks:
            return results
        try:
            await asyncio.wait(tasks, timeout=deadline)
        finally:
            for task in tasks:
                task.cancel()  # the unfinished ones; a finished task ignores it
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):  # our own error (a database, a bug), raised as before
                raise outcome
        return results
