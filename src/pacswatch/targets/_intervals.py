"""Sorted integer intervals of addresses: what targets, scope and blocklist are made of.

Addresses are kept as (version, int) pairs and ranges as inclusive integer intervals, so a /8 or a
whole IPv6 /96 costs two integers, not millions of objects, and a lookup is one `bisect`. The two
address families are kept apart (a dict keyed by 4 and 6) so that 255.255.255.255 and :: never
look adjacent.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from itertools import pairwise

IPAddress = IPv4Address | IPv6Address
# (version, first, last), inclusive at both ends, like the ranges people write.
Span = tuple[int, int, int]

# The top 96 bits (value >> 32) of the two prefixes that carry an IPv4 address in the low 32.
_NAT64_PREFIX = 0x0064_FF9B_0000_0000_0000_0000  # 64:ff9b::/96, RFC 6052 well-known prefix
_V4MAPPED_PREFIX = 0xFFFF  # ::ffff:0:0/96, RFC 4291 section 2.5.5.2


def to_key(ip: str | IPAddress) -> tuple[int, int]:
    """(version, integer) for an address given as text or ipaddress object."""
    if isinstance(ip, str):
        ip = ip_address(ip)
    return ip.version, int(ip)


def embedded_v4(version: int, value: int, *, nat64: bool = True) -> int | None:
    """The IPv4 address an IPv6 address really reaches, if any.

    A dual-stack socket sends ::ffff:192.0.2.5 to 192.0.2.5, and a NAT64 gateway sends
    64:ff9b::c000:205 there too; checking only the IPv6 form would let a blocked IPv4 address
    through under another spelling. Pass nat64=False where the check widens what is allowed
    (scope), since whether a NAT64 gateway exists is not known here.
    """
    if version != 6:
        return None
    high = value >> 32
    if high == _V4MAPPED_PREFIX or (nat64 and high == _NAT64_PREFIX):
        return value & 0xFFFF_FFFF
    return None


def canonical_span(span: Span) -> Span:
    """A span inside ::ffff:0:0/96 as the IPv4 span it reaches (::ffff:10.0.0.0/104 is
    10.0.0.0/8), so an entry matches a target however either was written; other spans as given."""
    version, first, last = span
    if version == 6 and first >> 32 == _V4MAPPED_PREFIX and last >> 32 == _V4MAPPED_PREFIX:
        return 4, first & 0xFFFF_FFFF, last & 0xFFFF_FFFF
    return span


def mapped_v6(value: int) -> int:
    """The IPv4-mapped IPv6 address (::ffff:a.b.c.d) of an IPv4 address, as an integer."""
    return _V4MAPPED_PREFIX << 32 | value


def merge(spans: Iterable[Span]) -> dict[int, tuple[list[int], list[int]]]:
    """Merge overlapping and adjacent spans: per family, the sorted starts and ends."""
    out: dict[int, tuple[list[int], list[int]]] = {4: ([], []), 6: ([], [])}
    for version, first, last in sorted(spans):
        starts, ends = out[version]
        if ends and first <= ends[-1] + 1:
            ends[-1] = max(ends[-1], last)
        else:
            starts.append(first)
            ends.append(last)
    return out


class IntervalIndex:
    """Membership in a union of spans, by bisection."""

    __slots__ = ("_fam",)

    def __init__(self, spans: Iterable[Span]) -> None:
        self._fam = merge(spans)

    def contains(self, version: int, value: int) -> bool:
        starts, ends = self._fam[version]
        i = bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]

    def spans(self) -> list[Span]:
        return [(v, s, e) for v in (4, 6) for s, e in zip(*self._fam[v], strict=True)]

    def __bool__(self) -> bool:
        return any(starts for starts, _ in self._fam.values())


class LabelledIndex:
    """Spans that carry a label (a reason); a lookup returns the label of the narrowest span.

    Overlaps are normal (an opt-out /28 inside a /24 someone also excluded), and the narrowest
    entry is the most specific, so its reason is the one worth reporting. The spans are cut into
    disjoint segments once, by a sweep, so a lookup stays one bisect however many overlap.
    """

    __slots__ = ("_fam",)

    def __init__(self, entries: Iterable[tuple[Span, str]]) -> None:
        by_fam: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for (version, first, last), label in entries:
            by_fam[version].append((first, last, label))
        self._fam = {v: _segment(items) for v, items in by_fam.items()}

    def label_for(self, version: int, value: int) -> str | None:
        starts, ends, labels = self._fam[version]
        i = bisect_right(starts, value) - 1
        if i >= 0 and value <= ends[i]:
            return labels[i]
        return None


def _segment(items: list[tuple[int, int, str]]) -> tuple[list[int], list[int], list[str]]:
    """Cut overlapping labelled spans into disjoint ones labelled by the narrowest cover."""
    # Boundaries where the set of covering spans can change.
    points = sorted({p for first, last, _ in items for p in (first, last + 1)})
    by_start = sorted(range(len(items)), key=lambda k: items[k][0])
    active: list[tuple[int, int, int]] = []  # heap of (width, order, item index)
    starts: list[int] = []
    ends: list[int] = []
    labels: list[str] = []
    nxt = 0
    for a, b in pairwise(points):
        while nxt < len(by_start) and items[by_start[nxt]][0] <= a:
            k = by_start[nxt]
            heapq.heappush(active, (items[k][1] - items[k][0], k, k))
            nxt += 1
        while active and items[active[0][2]][1] < a:  # lazily drop spans that ended
            heapq.heappop(active)
        if not active:
            continue
        label = items[active[0][2]][2]
        if ends and ends[-1] == a - 1 and labels[-1] == label:
            ends[-1] = b - 1
        else:
            starts.append(a)
            ends.append(b - 1)
            labels.append(label)
    return starts, ends, labels
