"""Facts about an address, each with where it came from and when.

A fact is the unit the attribution decision works on (owner.py): small, plain, serialisable, so
that the same facts can be cached, stored, shown to a person ("why do you think we own this?")
and fed back into the pure decision when any one of them changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Fact kinds. The value's shape per kind is documented here, once.
PTR = "ptr"  # value: host name (no trailing dot); detail: {"confirmed": bool}
RDAP_NETWORK = "rdap.network"  # value: network name; detail: {handle, cidr, start, end, country, server}
RDAP_ORG = "rdap.org"  # value: organisation name (registrant)
RDAP_ABUSE = "rdap.abuse"  # value: e-mail of the entity with the `abuse` role
RDAP_CONTACT = "rdap.contact"  # value: e-mail of another entity (technical, administrative)
RDAP_COUNTRY = "rdap.country"  # value: ISO 3166 code
ASN = "asn"  # value: "64500" (digits); detail: {"prefix": "..."}
ASN_HOLDER = "asn.holder"  # value: holder name
SECURITY_TXT = "security.txt"  # value: contact URI; detail: {domain, url, expires, languages, policy}
LOCAL = "local"  # value: owner name; detail: {id, match, contacts, language, notes}
CLOUD = "cloud"  # value: provider name; detail: {abuse, matched}
ERROR = "error"  # value: what failed (the source); detail: {"error": text}, so gaps are visible
# value: the source ("rdap", "security.txt"); detail: {"note": text}: something a source said that
# was dropped at entry (an e-mail address that is not exactly one address, a Contact that is not
# mailto: or https:) or an address not asked (blocked, opted out, out of scope), so the provenance
# shows what was not used and why. (A PTR name that is not a host name stays a PTR fact, with
# detail {"confirmed": False, "note": ...}.)
NOTE = "note"

KINDS = (PTR, RDAP_NETWORK, RDAP_ORG, RDAP_ABUSE, RDAP_CONTACT, RDAP_COUNTRY, ASN, ASN_HOLDER,
         SECURITY_TXT, LOCAL, CLOUD, ERROR, NOTE)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fact:
    """One thing learned about `subject` (an address or a domain)."""

    subject: str
    kind: str
    value: str
    source: str  # where: "dns:127.0.0.53:53", "rdap:https://rdap.example.org/", "table:asn.txt", "local"
    at: datetime  # when it was learned (UTC)
    detail: dict[str, Any] = field(default_factory=dict)
    ttl_s: int = 86400  # how long it may be trusted; the cache drops it after

    def expires_at(self) -> datetime:
        return self.at + timedelta(seconds=self.ttl_s)

    def fresh(self, now: datetime) -> bool:
        return now < self.expires_at()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fact:
        at = data["at"]
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return cls(data["subject"], data["kind"], data["value"], data["source"], at,
                   dict(data.get("detail") or {}), int(data.get("ttl_s", 86400)))


def of_kind(facts: Iterable[Fact], kind: str) -> list[Fact]:
    return [f for f in facts if f.kind == kind]


def first_value(facts: Iterable[Fact], kind: str) -> str | None:
    for f in facts:
        if f.kind == kind:
            return f.value
    return None
