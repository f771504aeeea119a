"""The blocklist and scope of a campaign scan: the defaults, --exclude files, the opt-out list
and the scope kept in the database, and a --scope file.

The opt-out list feeds the blocklist of every scan that opens the database, so an owner who
asked not to be scanned is refused before any packet, with a reason that names the entry (not
the contact: records are shared with others, the contact stays in the database).
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address, ip_network
from typing import Iterable, Mapping, Sequence

from pacswatch.targets import BlockEntry, Blocklist, Scope
from pacswatch.targets.parse import parse_address_range


def normalize_network(text: str) -> str:
    """An address, CIDR or range as it will be stored; ValueError with a reason otherwise."""
    text = text.strip()
    parse_address_range(text)  # the same syntax (and errors) as --exclude and --scope files
    if "/" in text:
        return str(ip_network(text, strict=True))
    if "-" in text:
        return text
    return str(ip_address(text))


def optout_entries(rows: Iterable[Mapping]) -> list[BlockEntry]:
    out = []
    for row in rows:
        when = row["requested_at"]
        day = when.date().isoformat() if isinstance(when, datetime) else str(when)[:10]
        out.append(BlockEntry(parse_address_range(row["cidr"]),
                              f"on the opt-out list (entry {row['id']}, {row['cidr']}, asked {day})"))
    return out


def campaign_blocklist(optouts: Iterable[Mapping], exclude_files: Sequence[str] = ()) -> Blocklist:
    blocklist = Blocklist.default().with_entries(optout_entries(optouts))
    for path in exclude_files:
        blocklist = blocklist.with_file(path)
    return blocklist


class AllScopes:
    """In scope only where every one of several scopes says so (a --scope file and the
    database's scope): each authorisation narrows, none widens. Duck-types Scope for ScanPlan."""

    __slots__ = ("_scopes",)

    def __init__(self, scopes: Sequence[Scope]) -> None:
        self._scopes = tuple(scopes)

    def reason_for_key(self, version: int, value: int) -> str | None:
        for scope in self._scopes:
            reason = scope.reason_for_key(version, value)
            if reason is not None:
                return reason
        return None

    def reason_for(self, ip) -> str | None:
        for scope in self._scopes:
            reason = scope.reason_for(ip)
            if reason is not None:
                return reason
        return None


def campaign_scope(scope_file: str | None, entries: Iterable[Mapping]) -> Scope | AllScopes | None:
    """None when no scope is configured anywhere (everything not blocked may be scanned)."""
    scopes = []
    if scope_file:
        scopes.append(Scope.from_file(scope_file))
    entries = list(entries)
    if entries:
        scopes.append(Scope.from_specs([e["cidr"] for e in entries], "the scope in the database"))
    if not scopes:
        return None
    return scopes[0] if len(scopes) == 1 else AllScopes(scopes)
