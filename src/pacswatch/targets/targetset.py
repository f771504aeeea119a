"""The set of addresses to scan, kept as merged integer ranges, plus endpoints with a pinned port.

A TargetSet never lists its addresses: 10.0.0.0/8 is one range of 16,777,216. It maps an index in
[0, size) to an address by bisecting cumulative range sizes, which is what the scan plan needs to
walk the addresses in a random permutation (docs/design.md: "a random permutation for the scan order").
Overlapping specs are merged, so an address named twice is scanned once.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    summarize_address_range,
)
from types import MappingProxyType

from pacswatch.targets._intervals import IntervalIndex, IPAddress, Span, to_key


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address and port, given as HOST:PORT; `hostname` is the name it came from, if any
    (kept for TLS SNI, the HTTP Host header and attribution)."""

    ip: IPAddress
    port: int
    hostname: str | None = None

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


def format_ip(version: int, value: int) -> str:
    """Text of an address; the IPv4 case by hand because the plan does it per endpoint."""
    if version == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(IPv6Address(value))


class TargetSet:
    """Addresses (IPv4 first, then IPv6, each ascending) and pinned endpoints."""

    __slots__ = (
        "_ends",
        "_hostnames",
        "_index",
        "_offsets",
        "_pinned",
        "_size",
        "_starts",
        "_versions",
    )

    def __init__(
        self,
        spans: Iterable[Span] = (),
        pinned: Iterable[Endpoint] = (),
        hostnames: Mapping[tuple[int, int], Iterable[str]] | None = None,
    ) -> None:
        self._index = IntervalIndex(spans)
        self._versions: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._offsets: list[int] = []  # index of each range's first address
        size = 0
        for version, first, last in self._index.spans():  # IPv4 first, each family ascending
            self._versions.append(version)
            self._starts.append(first)
            self._ends.append(last)
            self._offsets.append(size)
            size += last - first + 1
        self._size = size
        # Same endpoint twice (two specs, or a name and its address) is scanned once; first wins.
        seen: dict[tuple[int, int, int], Endpoint] = {}
        for ep in pinned:
            seen.setdefault((ep.ip.version, int(ep.ip), ep.port), ep)
        self._pinned = tuple(seen.values())
        names = {key: tuple(dict.fromkeys(v)) for key, v in (hostnames or {}).items()}
        self._hostnames = MappingProxyType(names)

    @property
    def size(self) -> int:
        """Number of distinct addresses (pinned endpoints not counted)."""
        return self._size

    @property
    def pinned(self) -> tuple[Endpoint, ...]:
        return self._pinned

    @property
    def hostnames(self) -> Mapping[tuple[int, int], tuple[str, ...]]:
        """Names an address was reached through, keyed by (version, int)."""
        return self._hostnames

    def __bool__(self) -> bool:
        return self._size > 0 or bool(self._pinned)

    def key_at(self, index: int) -> tuple[int, int]:
        """(version, int) of the address at `index`, in O(log ranges)."""
        if not 0 <= index < self._size:
            raise IndexError(f"address index {index} outside [0, {self._size})")
        i = bisect_right(self._offsets, index) - 1
        return self._versions[i], self._starts[i] + (index - self._offsets[i])

    def address_at(self, index: int) -> IPAddress:
        version, value = self.key_at(index)
        return IPv4Address(value) if version == 4 else IPv6Address(value)

    def __contains__(self, ip: object) -> bool:
        """Whether an address is among the ranges (pinned endpoints are not looked at)."""
        if not isinstance(ip, (str, IPv4Address, IPv6Address)):
            return False
        return self._index.contains(*to_key(ip))

    def contains_key(self, version: int, value: int) -> bool:
        return self._index.contains(version, value)

    def ranges(self) -> Iterator[tuple[IPAddress, IPAddress]]:
        """Merged (first, last) address ranges, in index order."""
        for version, first, last in zip(self._versions, self._starts, self._ends, strict=True):
            cls = IPv4Address if version == 4 else IPv6Address
            yield cls(first), cls(last)

    def networks(self) -> Iterator[IPv4Network | IPv6Network]:
        """The ranges as the fewest CIDR networks, lazily."""
        for first, last in self.ranges():
            yield from summarize_address_range(first, last)

    def hostname_for(self, ip: str | IPAddress) -> str | None:
        names = self._hostnames.get(to_key(ip))
        return names[0] if names else None

    def __repr__(self) -> str:
        ranges, pinned = len(self._starts), len(self._pinned)
        return f"TargetSet(size={self._size}, ranges={ranges}, pinned={pinned})"

