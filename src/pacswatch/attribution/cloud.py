"""Cloud and hosting providers, recognised from facts by a table (data, not code).

An archive on a rented server belongs to the provider's customer, not to the provider: the
RDAP abuse contact of such an address reaches the provider, who can only forward. So a match
here changes the decision (owner.py): the customer (found by PTR, security.txt or the local
table) is the first route when known, and the provider's abuse address is kept as the second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pacswatch.attribution import facts as F


@dataclass(frozen=True)
class Provider:
    name: str
    abuse: str
    asns: frozenset[int]
    org_patterns: tuple[re.Pattern, ...]
    ptr_suffixes: tuple[str, ...]


@dataclass(frozen=True)
class CloudMatch:
    provider: str
    abuse: str
    matched: str  # which fact matched: "asn 64500", "org ...", "ptr ..."


def _provider(entry: dict) -> Provider:
    return Provider(entry["name"], entry["abuse"], frozenset(int(a) for a in entry.get("asns", ())),
                    tuple(re.compile(p, re.IGNORECASE) for p in entry.get("org_patterns", ())),
                    tuple(s.lower().lstrip(".") for s in entry.get("ptr_suffixes", ())))


def load_providers(path: str | Path | None = None) -> tuple[Provider, ...]:
    """The shipped table, plus the entries of `path` (same shape), which come first."""
    shipped = json.loads(resources.files("pacswatch.attribution").joinpath("cloud_providers.json").read_text())
    extra = json.loads(Path(path).read_text()) if path else {"providers": []}
    return tuple(_provider(e) for e in [*extra["providers"], *shipped["providers"]])


def recognise(facts: Iterable[F.Fact], providers: Iterable[Provider]) -> CloudMatch | None:
    """The first provider any fact points to: the ASN first (most reliable), then the RDAP
    organisation or network name, then the PTR name."""
    facts = list(facts)
    asns = {int(f.value) for f in facts if f.kind == F.ASN and f.value.isdigit()}
    orgs = [f.value for f in facts if f.kind in (F.RDAP_ORG, F.RDAP_NETWORK, F.ASN_HOLDER)]
    ptrs = [f.value.lower() for f in facts if f.kind == F.PTR]
    providers = list(providers)
    for p in providers:
        hit = sorted(asns & p.asns)
        if hit:
            return CloudMatch(p.name, p.abuse, f"asn {hit[0]}")
    for p in providers:
        for org in orgs:
            if any(rx.search(org) for rx in p.org_patterns):
                return CloudMatch(p.name, p.abuse, f"org {org}")
    for p in providers:
        for ptr in ptrs:
            if any(ptr == s or ptr.endswith("." + s) for s in p.ptr_suffixes):
                return CloudMatch(p.name, p.abuse, f"ptr {ptr}")
    return None
