"""The local contacts table: CIDR or domain -> owner, contacts, language, notes.

CERTs keep their constituency's contacts by hand because they are better than anything public
(a named person who answers beats a registry's role mailbox), so a match here takes precedence
over every public source (owner.py). Matching is pure: the most specific entry wins (the
longest prefix for an address; the longest suffix for a host name).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pacswatch.attribution.entry import mailbox


@dataclass(frozen=True)
class LocalOwner:
    match: str  # a CIDR ("192.0.2.0/24") or a domain ("example.org")
    name: str
    contacts: tuple[str, ...]
    language: str | None = None
    notes: str | None = None
    id: int | None = None
    escalation: tuple[str, ...] = field(default_factory=tuple)  # who to tell when the owner does not act

    @property
    def is_network(self) -> bool:
        return _network(self.match) is not None


def _network(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def validate(match: str, contacts: Iterable[str]) -> list[str]:
    """What is wrong with an entry a user wants to add (empty: nothing)."""
    problems = []
    if _network(match) is None and not re.fullmatch(r"(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+\.?", match):
        problems.append(f"{match!r} is neither a CIDR nor a domain name")
    contacts = list(contacts)
    if not contacts:
        problems.append("at least one contact e-mail address is needed")
    for contact in contacts:
        try:
            mailbox(contact)
        except ValueError as exc:
            problems.append(str(exc))  # says which address and why; the address shown cleaned
    return problems


def best_match(entries: Iterable[LocalOwner], ip: str, names: Iterable[str] = ()) -> LocalOwner | None:
    """The most specific entry for `ip` (by prefix), else for one of its host `names`."""
    addr = ipaddress.ip_address(ip)
    best: tuple[int, LocalOwner] | None = None
    domain_best: tuple[int, LocalOwner] | None = None
    names = [n.rstrip(".").lower() for n in names]
    for entry in entries:
        net = _network(entry.match)
        if net is not None:
            if net.version == addr.version and addr in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, entry)
            continue
        domain = entry.match.rstrip(".").lower()
        for name in names:
            matches = name == domain or name.endswith("." + domain)
            if matches and (domain_best is None or len(domain) > domain_best[0]):
                domain_best = (len(domain), entry)
    if best is not None:
        return best[1]
    return domain_best[1] if domain_best else None
