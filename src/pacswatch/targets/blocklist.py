"""What must never be scanned (Blocklist) and what may be (Scope).

docs/design.md, "Scope first": every target passes the blocklist and the configured scope before any
packet is sent. Both answer with a reason rather than a bool, because a refusal is reported to
the user (status `blocked`), never silently dropped.

Loopback and private ranges are deliberately absent from the defaults: a hospital scanning its
own 10.0.0.0/8 is a main use, and the lab and the tests run on 127.0.0.0/8. Link-local ranges are
not: they are unroutable and hold the cloud metadata service.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

from pacswatch.targets._intervals import (
    IntervalIndex,
    IPAddress,
    LabelledIndex,
    Span,
    embedded_v4,
    mapped_v6,
    to_key,
)
from pacswatch.targets.parse import parse_address_range
from pacswatch.targets.specfile import SpecLine, TargetError, TargetProblem, read_spec_file, spec_lines

# Special-purpose ranges from the IANA registries (RFC 6890 and successors) that can never be a
# real server: sending to them is at best wasted and at worst a multicast/broadcast storm.
DEFAULT_BLOCKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network', not a destination (RFC 1122 section 3.2.1.3)"),
    # Link-local: no server is published there, and from a cloud host 169.254.169.254 is the
    # instance metadata service (credentials), which a target list or a hostile DNS answer for
    # a security.txt domain must never make us ask.
    ("169.254.0.0/16", "IPv4 link-local, incl. the cloud metadata service 169.254.169.254 (RFC 3927)"),
    ("224.0.0.0/4", "IPv4 multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved for future use (RFC 1112 section 4)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("192.0.2.0/24", "documentation range TEST-NET-1 (RFC 5737)"),
    ("198.51.100.0/24", "documentation range TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation range TEST-NET-3 (RFC 5737)"),
    ("::/128", "IPv6 unspecified address (RFC 4291)"),
    ("fe80::/10", "IPv6 link-local (RFC 4291)"),
    ("fd00:ec2::254/128", "the cloud metadata service's IPv6 address (AWS IMDS)"),
    ("ff00::/8", "IPv6 multicast (RFC 4291)"),
    ("2001:db8::/32", "IPv6 documentation range (RFC 3849)"),
)


@dataclass(frozen=True, slots=True)
class BlockEntry:
    span: Span
    reason: str


def default_entries() -> list[BlockEntry]:
    out = []
    for cidr, reason in DEFAULT_BLOCKS:
        net = ip_network(cidr)
        span = (net.version, int(net.network_address), int(net.broadcast_address))
        out.append(BlockEntry(span, f"{cidr}: {reason}"))
    return out


def load_exclude_file(path: str | Path) -> list[BlockEntry]:
    """Entries of an --exclude file: addresses, networks, ranges, '#' comments.

    The reason names the file and line, plus the line's comment if it has one, so an opt-out
    ("# Example Hospital asked on 2024-05-02") explains itself in every report. Every bad line is
    reported at once in a TargetError; host names are refused (see parse_address_range).
    """
    return exclude_entries(str(path), read_spec_file(path))


def exclude_entries(name: str, lines: Iterable[SpecLine]) -> list[BlockEntry]:
    """The entries of an --exclude file's lines (`name`: the file, for reasons and errors)."""
    entries: list[BlockEntry] = []
    problems: list[TargetProblem] = []
    for line in lines:
        try:
            span = parse_address_range(line.text)
        except ValueError as exc:
            problems.append(TargetProblem(name, line.line, line.text, str(exc)))
            continue
        reason = f"excluded by {name} line {line.line}"
        entries.append(BlockEntry(span, f"{reason}: {line.comment}" if line.comment else reason))
    if problems:
        raise TargetError(problems)
    return entries


class Blocklist:
    """Networks that are never scanned, each with the reason; immutable."""

    __slots__ = ("_entries", "_index")

    def __init__(self, entries: Iterable[BlockEntry] = ()) -> None:
        self._entries = tuple(entries)
        self._index = LabelledIndex((e.span, e.reason) for e in self._entries)

    @classmethod
    def default(cls) -> Blocklist:
        return cls(default_entries())

    def with_entries(self, entries: Iterable[BlockEntry]) -> Blocklist:
        return Blocklist((*self._entries, *entries))

    def with_file(self, path: str | Path) -> Blocklist:
        """This blocklist plus an --exclude file."""
        return self.with_entries(load_exclude_file(path))

    def with_text(self, name: str, text: str) -> Blocklist:
        """This blocklist plus the text of an --exclude file named `name` (read elsewhere)."""
        return self.with_entries(exclude_entries(name, spec_lines(text)))

    @property
    def entries(self) -> tuple[BlockEntry, ...]:
        return self._entries

    def reason_for(self, ip: str | IPAddress) -> str | None:
        """Why `ip` must not be scanned, or None if it may be (as far as the blocklist goes)."""
        return self.reason_for_key(*to_key(ip))

    def reason_for_key(self, version: int, value: int) -> str | None:
        """reason_for on an integer address: the plan's per-endpoint fast path."""
        reason = self._index.label_for(version, value)
        if reason is None:
            v4 = embedded_v4(version, value)
            if v4 is not None and (inner := self._index.label_for(4, v4)) is not None:
                reason = f"embeds a blocked IPv4 address: {inner}"
            elif version == 4:
                # The other direction: an IPv6 entry that covers ::ffff:a.b.c.d covers a.b.c.d
                # (entries inside ::ffff:0:0/96 are IPv4 already; this is for wider ones).
                reason = self._index.label_for(6, mapped_v6(value))
        return reason

    def __len__(self) -> int:
        return len(self._entries)


class Scope:
    """The networks a scan is authorised for; anything outside is refused with a reason.

    Use None (not an empty Scope) for "no scope configured": an empty Scope refuses everything,
    which is the honest reading of an empty authorisation.
    """

    __slots__ = ("_index", "_label")

    def __init__(self, spans: Iterable[Span], label: str = "the configured scope") -> None:
        self._index = IntervalIndex(spans)
        self._label = label

    @classmethod
    def from_specs(cls, specs: Iterable[str], label: str = "the configured scope") -> Scope:
        """From addresses, networks and ranges; every bad spec is reported in one TargetError."""
        spans, problems = [], []
        for position, text in enumerate(specs, start=1):
            try:
                spans.append(parse_address_range(text))
            except ValueError as exc:
                problems.append(TargetProblem("scope", position, text, str(exc)))
        if problems:
            raise TargetError(problems)
        return cls(spans, label)

    @classmethod
    def from_file(cls, path: str | Path) -> Scope:
        return cls.from_lines(str(path), read_spec_file(path))

    @classmethod
    def from_lines(cls, path: str, lines: Iterable[SpecLine]) -> Scope:
        """From a --scope file's lines (`path`: the file's name, for reasons and errors)."""
        spans, problems = [], []
        for line in lines:
            try:
                spans.append(parse_address_range(line.text))
            except ValueError as exc:
                problems.append(TargetProblem(str(path), line.line, line.text, str(exc)))
        if problems:
            raise TargetError(problems)
        return cls(spans, f"the scope in {path}")

    def reason_for(self, ip: str | IPAddress) -> str | None:
        """None if `ip` is in scope, else why it is refused."""
        return self.reason_for_key(*to_key(ip))

    def reason_for_key(self, version: int, value: int) -> str | None:
        if self._index.contains(version, value):
            return None
        # ::ffff:10.0.0.5 reaches 10.0.0.5, so it is in scope wherever 10.0.0.5 is.
        v4 = embedded_v4(version, value, nat64=False)
        if v4 is not None and self._index.contains(4, v4):
            return None
        return f"outside {self._label}"
