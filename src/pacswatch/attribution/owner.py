"""Who owns an address and whom to tell: a pure function of the facts.

Precedence, most trusted first, and why:

1. the local contacts table (local.py): kept by the user, names people who answer;
2. security.txt (RFC 9116) of a domain whose PTR is forward-confirmed: the owner's own word
   about whom to tell (an unconfirmed PTR can be set by anyone who controls the reverse zone,
   so it never leads to security.txt);
3. a cloud or hosting provider (cloud.py): the provider's abuse desk, when the customer is not
   known otherwise: it can forward, and it is the route that acts on rented machines;
4. the RDAP abuse contact of the most specific network: studies of notification campaigns
   found direct abuse contacts, with details in the body, work best among public routes;
5. any other RDAP contact (technical, administrative): reaches someone, less reliably.

The route not taken for the first contact, if any, is the escalation route (the hosting
provider or the network's abuse desk), used when the owner does not act (notify/cases.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pacswatch.attribution import facts as F
from pacswatch.attribution.cloud import CloudMatch, Provider, recognise
from pacswatch.attribution.local import LocalOwner, best_match
from pacswatch.attribution.securitytxt import candidate_domains

HIGH, MEDIUM, LOW, NONE = 0.9, 0.7, 0.5, 0.0


@dataclass(frozen=True)
class Contact:
    address: str  # an e-mail address
    role: str  # owner | security.txt | abuse | provider | technical
    source: str  # the fact's source


@dataclass(frozen=True)
class Attribution:
    ip: str
    owner_key: str  # groups addresses into one case: local:ID, domain:NAME, cloud:NAME, rdap:HANDLE, ...
    owner_name: str
    contact: Contact | None
    escalation: Contact | None
    confidence: float
    reasons: tuple[str, ...]
    language: str | None = None
    cloud: str | None = None
    facts_digest: str = ""
    others: tuple[Contact, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        def c(contact: Contact | None):
            return None if contact is None else {"address": contact.address, "role": contact.role,
                                                 "source": contact.source}
        return {"ip": self.ip, "owner_key": self.owner_key, "owner_name": self.owner_name,
                "contact": c(self.contact), "escalation": c(self.escalation), "confidence": self.confidence,
                "reasons": list(self.reasons), "language": self.language, "cloud": self.cloud,
                "facts_digest": self.facts_digest, "others": [c(o) for o in self.others]}


def digest(facts: Iterable[F.Fact]) -> str:
    """What the decision depends on, without the times: a refresh that learns the same values
    keeps the digest, so a case is not re-decided just because the cache expired."""
    items = sorted({(f.kind, f.value, str(sorted((f.detail or {}).items()))) for f in facts if f.kind != F.ERROR})
    return hashlib.sha256(repr(items).encode()).hexdigest()[:16]


def confirmed_names(facts: Iterable[F.Fact]) -> list[str]:
    return [f.value for f in facts if f.kind == F.PTR and f.detail.get("confirmed")]


def decide(ip: str, facts: Iterable[F.Fact], *, local: Iterable[LocalOwner] = (), providers: Iterable[Provider] = (),
           now: datetime | None = None) -> Attribution:
    facts = [f for f in facts if now is None or f.kind == F.LOCAL or f.fresh(now)]
    names = confirmed_names(facts)
    cloud = recognise(facts, providers)
    rdap_abuse = _first_contact(facts, F.RDAP_ABUSE, "abuse")
    rdap_other = _first_contact(facts, F.RDAP_CONTACT, "technical")
    network = _network_label(facts)
    reasons: list[str] = []
    if names:
        reasons.append(f"PTR {names[0]} (forward-confirmed)")
    elif unconfirmed := [f.value for f in facts if f.kind == F.PTR]:
        reasons.append(f"PTR {unconfirmed[0]} is not forward-confirmed: not used to find the owner")
    if cloud:
        reasons.append(f"hosted at {cloud.provider} ({cloud.matched})")
    base: dict[str, Any] = {"ip": ip, "cloud": cloud.provider if cloud else None, "facts_digest": digest(facts)}
    provider_route = _provider_contact(cloud) or rdap_abuse

    entry = best_match(local, ip, names)
    if entry is not None:
        route = Contact(entry.contacts[0], "owner", f"local:{entry.match}")
        escalation = (Contact(entry.escalation[0], "provider", f"local:{entry.match}") if entry.escalation
                      else provider_route)
        reasons.insert(0, f"local contacts table: {entry.match} -> {entry.name}")
        others = tuple(Contact(c, "owner", f"local:{entry.match}") for c in entry.contacts[1:])
        return Attribution(owner_key=f"local:{entry.id if entry.id is not None else entry.match}",
                           owner_name=entry.name, contact=route, escalation=_other(escalation, route),
                           confidence=HIGH + 0.05, reasons=tuple(reasons), language=entry.language,
                           others=others, **base)

    sectxt = _security_txt(facts, names, now)
    if sectxt is not None:
        fact, email = sectxt
        route = Contact(email, "security.txt", fact.source)
        reasons.insert(0, f"security.txt of {fact.detail.get('domain', fact.subject)} names {email}")
        langs = fact.detail.get("languages") or []
        return Attribution(owner_key=f"domain:{fact.detail.get('domain', fact.subject)}",
                           owner_name=str(fact.detail.get("domain", fact.subject)), contact=route,
                           escalation=_other(provider_route, route), confidence=HIGH, reasons=tuple(reasons),
                           language=langs[0] if langs else None, **base)

    if cloud is not None:
        desk = _provider_contact(cloud)
        customer = names[0] if names else None
        reasons.insert(0, f"provider abuse desk of {cloud.provider}: the customer is not known otherwise")
        return Attribution(owner_key=f"cloud:{cloud.provider}",
                           owner_name=f"{cloud.provider} customer" + (f" ({customer})" if customer else ""),
                           contact=desk, escalation=None, confidence=LOW + 0.1, reasons=tuple(reasons), **base)

    org = F.first_value(facts, F.RDAP_ORG) or F.first_value(facts, F.ASN_HOLDER) or network or "unknown"
    key = _network_key(facts) or f"ip:{ip}"
    for rdap_route, confidence, why in ((rdap_abuse, MEDIUM, "RDAP abuse contact of the network"),
                                        (rdap_other, LOW, "RDAP contact of the network (no abuse role listed)")):
        if rdap_route is not None:
            reasons.insert(0, f"{why}: {rdap_route.address}")
            others = tuple(c for c in (rdap_other,) if c is not None and c != rdap_route)
            # A confirmed name raises trust that the network's contact is the right one.
            return Attribution(owner_key=key, owner_name=org, contact=rdap_route, escalation=None,
                               confidence=confidence + (0.05 if names else 0.0), reasons=tuple(reasons),
                               others=others, **base)
    reasons.insert(0, "no contact found in any source")
    return Attribution(owner_key=key, owner_name=org, contact=None, escalation=None, confidence=NONE,
                       reasons=tuple(reasons), **base)


def _other(candidate: Contact | None, route: Contact) -> Contact | None:
    """An escalation route that is the first route again is no escalation."""
    if candidate is None or candidate.address.lower() == route.address.lower():
        return None
    return candidate


def _provider_contact(cloud: CloudMatch | None) -> Contact | None:
    return Contact(cloud.abuse, "provider", f"cloud-table:{cloud.provider}") if cloud else None


def _first_contact(facts: list[F.Fact], kind: str, role: str) -> Contact | None:
    for f in facts:
        if f.kind == kind and "@" in f.value:
            return Contact(f.value, role, f.source)
    return None


def _network_label(facts: list[F.Fact]) -> str | None:
    for f in facts:
        if f.kind == F.RDAP_NETWORK:
            return f.value
    return None


def _network_key(facts: list[F.Fact]) -> str | None:
    for f in facts:
        if f.kind == F.RDAP_NETWORK:
            return f"rdap:{f.detail.get('handle') or f.value}"
    asn = F.first_value(facts, F.ASN)
    return f"asn:{asn}" if asn else None


def _security_txt(facts: list[F.Fact], names: list[str], now: datetime | None):
    """The security.txt fact of the most specific domain of a confirmed name, unexpired."""
    domains = [d for name in names for d in candidate_domains(name)]
    found = [f for f in facts if f.kind == F.SECURITY_TXT and f.value.lower().startswith("mailto:")
             and f.detail.get("domain") in domains]
    found.sort(key=lambda f: (domains.index(f.detail["domain"]), f.detail.get("order", 0)))
    for f in found:
        expires = f.detail.get("expires")
        if now is not None and expires and datetime.fromisoformat(expires) <= now:
            continue  # RFC 9116 2.5.5: an expired file is stale and should not be used
        return f, f.value[len("mailto:"):]
    return None
