"""An offline prefix-to-ASN table (the `ipasn` text format of pyasn: `prefix<TAB>asn`, `;`
comments), with an optional third column for the AS holder's name.

Offline because RDAP does not reliably give the origin AS (only ARIN adds it, as an extension),
and because a CERT processing a whole country's scan should not ask a registry once per address
for what a routing-table dump answers locally. Lookups are longest-prefix matches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AsnMatch:
    asn: int
    prefix: str
    holder: str | None = None


class AsnTable:
    def __init__(self, rows: Iterable[tuple[str, int, str | None]] = ()) -> None:
        # One dict per (version, prefix length): a lookup is at most 33 (or 129) dict probes.
        self._by_len: dict[tuple[int, int], dict[int, AsnMatch]] = {}
        for prefix, asn, holder in rows:
            net = ipaddress.ip_network(prefix, strict=False)
            key = (net.version, net.prefixlen)
            self._by_len.setdefault(key, {})[int(net.network_address)] = AsnMatch(int(asn), str(net), holder)
        self._lengths = sorted(self._by_len, key=lambda k: -k[1])

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_len.values())

    def lookup(self, ip: str) -> AsnMatch | None:
        addr = ipaddress.ip_address(ip)
        bits = 32 if addr.version == 4 else 128
        value = int(addr)
        for version, length in self._lengths:
            if version != addr.version:
                continue
            masked = value >> (bits - length) << (bits - length) if length else 0
            match = self._by_len[(version, length)].get(masked)
            if match is not None:
                return match
        return None

    @classmethod
    def parse(cls, text: str) -> AsnTable:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith((";", "#")):
                continue
            parts = line.split("\t") if "\t" in line else line.split(None, 2)
            if len(parts) < 2:
                raise ValueError(f"line {number}: expected PREFIX ASN [HOLDER], got {line!r}")
            asn = parts[1].strip().upper().removeprefix("AS")
            holder = parts[2].strip() if len(parts) > 2 and parts[2].strip() else None
            rows.append((parts[0].strip(), int(asn), holder))
        return cls(rows)

    @classmethod
    def load(cls, path: str | Path) -> AsnTable:
        return cls.parse(Path(path).read_text(encoding="utf-8"))
