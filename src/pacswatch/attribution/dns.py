"""Reverse DNS with forward confirmation, through a resolver we configure (never implicitly the
system's: the tests point it at a DNS server on loopback, an agency at its own resolver).

A PTR record is what the holder of the reverse zone says; anyone can put any name there. A name
is "forward-confirmed" when the name's own A/AAAA records lead back to the address (FCrDNS), so
the holder of the forward zone agrees; only confirmed names lead to an owner (owner.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from pacswatch.attribution import facts as F
from pacswatch.attribution.entry import host_name
from pacswatch.text import clean

# dnspython is imported where a lookup is made, not here: the configuration (ResolverConfig) is
# read after every scan (notify/config.py), which should not pay for a DNS stack it rarely uses.
if TYPE_CHECKING:
    import dns.asyncresolver


@dataclass(frozen=True)
class ResolverConfig:
    """Nameservers as "IP" or "IP:PORT" ("[v6]:PORT"); empty means the system's resolv.conf,
    which is only read when the user asks for it (`system=True`)."""

    nameservers: tuple[str, ...] = ()
    timeout: float = 5.0
    system: bool = False
    ttl_s: int = 86400

    def label(self) -> str:
        return "dns:" + (",".join(self.nameservers) if self.nameservers else "system")


def _split(server: str) -> tuple[str, int]:
    if server.startswith("["):
        host, _, port = server[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server, 53


def make_resolver(config: ResolverConfig) -> dns.asyncresolver.Resolver:
    import dns.asyncresolver
    import dns.nameserver

    if not config.nameservers:
        if not config.system:
            raise ValueError("no DNS resolver configured: name one (--resolver IP[:PORT]) or allow the system's")
        resolver = dns.asyncresolver.Resolver(configure=True)
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*_split(s)) for s in config.nameservers]
    resolver.lifetime = config.timeout
    resolver.timeout = config.timeout
    resolver.cache = None  # the attribution cache keeps facts with their times; no hidden second cache
    return resolver


def confirm(ip: str, forward: Mapping[str, Iterable[str]]) -> dict[str, bool]:
    """name -> whether its forward addresses include `ip` (pure)."""
    want = ipaddress.ip_address(ip)
    out = {}
    for name, addresses in forward.items():
        found = set()
        for a in addresses:
            try:
                found.add(ipaddress.ip_address(a))
            except ValueError:
                continue
        out[name] = want in found
    return out


async def addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """A and AAAA of `name`; empty when there are none (NXDOMAIN, no answer, timeout)."""
    import dns.exception
    import dns.resolver

    out: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers, dns.exception.Timeout):
            continue
        out += [r.address for r in answer]
    return out


async def reverse_facts(resolver: dns.asyncresolver.Resolver, ip: str, *, now: datetime, source: str,
                        ttl_s: int = 86400, max_names: int = 4) -> list[F.Fact]:
    """PTR facts for `ip`, each with detail.confirmed; an error fact when the lookup failed
    (a timeout is not the same as "no name", and the difference should show)."""
    import dns.exception
    import dns.resolver
    import dns.reversename

    try:
        answer = await resolver.resolve(dns.reversename.from_address(ip), "PTR", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
        return [F.Fact(ip, F.ERROR, "ptr", source, now, {"error": type(exc).__name__}, ttl_s=600)]
    names: list[str] = []
    out: list[F.Fact] = []
    for record in list(answer)[:max_names]:
        # dnspython shows a label's odd bytes as \DDD escapes; a name that is not a host name is
        # kept (cleaned) to show, but never confirmed: it would become a query and a Host header.
        shown = record.target.to_text(omit_final_dot=True)
        name = host_name(shown)
        if name is None:
            out.append(F.Fact(ip, F.PTR, clean(shown), source, now,
                              {"confirmed": False, "note": "not a host name: not used"}, ttl_s=ttl_s))
        elif name not in names:
            names.append(name)
    forward = {name: await addresses(resolver, name) for name in names}
    confirmed = confirm(ip, forward)
    return [F.Fact(ip, F.PTR, name, source, now, {"confirmed": confirmed[name]}, ttl_s=ttl_s) for name in names] + out
