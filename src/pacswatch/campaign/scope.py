"""The blocklist and scope of a campaign scan: the defaults, --exclude files, the opt-out list
and the scope kept in the database, and a --scope file.

The opt-out list feeds the blocklist of every scan that opens the database, so an owner who
asked not to be scanned is refused before any packet, with a reason that names the entry (not
the contact: records are shared with others, the contact stays in the database). A running scan
follows the list (LiveBlocklist): an opt-out added while it runs refuses every endpoint the scan
takes after the entry is committed. `scope_reason` is the same answer for one address, for
everything else that contacts a host (`probe`, attribution's fetches).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, summarize_address_range

from pacswatch.targets import BlockEntry, Blocklist, Scope
from pacswatch.targets.parse import parse_address_range
from pacswatch.targets.specfile import spec_lines
from pacswatch.targets.targetset import format_ip


def normalize_network(text: str) -> str:
    """An address, CIDR or range as it will be stored; ValueError with a reason otherwise.

    The same syntax (and errors) as --exclude and --scope files; an IPv4-mapped IPv6 entry
    (::ffff:192.0.2.9) is stored as the IPv4 address it reaches, as targets are."""
    version, first, last = parse_address_range(text)
    if first == last:
        return format_ip(version, first)
    cls = IPv4Address if version == 4 else IPv6Address
    networks = list(summarize_address_range(cls(first), cls(last)))
    if len(networks) == 1:
        return str(networks[0])
    return f"{format_ip(version, first)}-{format_ip(version, last)}"


def optout_entries(rows: Iterable[Mapping]) -> list[BlockEntry]:
    out = []
    for row in rows:
        when = row["requested_at"]
        day = when.date().isoformat() if isinstance(when, datetime) else str(when)[:10]
        out.append(BlockEntry(parse_address_range(row["cidr"]),
                              f"on the opt-out list (entry {row['id']}, {row['cidr']}, asked {day})"))
    return out


def campaign_blocklist(optouts: Iterable[Mapping], exclude_files: Sequence[str] = (),
                       exclude_texts: Sequence[tuple[str, str]] = ()) -> Blocklist:
    """`exclude_texts`: (name, text) of --exclude files read elsewhere (a distributed scan's)."""
    blocklist = Blocklist.default().with_entries(optout_entries(optouts))
    for path in exclude_files:
        blocklist = blocklist.with_file(path)
    for name, text in exclude_texts:
        blocklist = blocklist.with_text(name, text)
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


def campaign_scope(scope_file: str | None, entries: Iterable[Mapping],
                   scope_text: tuple[str, str] | None = None) -> Scope | AllScopes | None:
    """None when no scope is configured anywhere (everything not blocked may be scanned).
    `scope_text`: (name, text) of a --scope file read elsewhere (a distributed scan's)."""
    scopes = []
    if scope_file:
        scopes.append(Scope.from_file(scope_file))
    if scope_text is not None:
        scopes.append(Scope.from_lines(scope_text[0], spec_lines(scope_text[1])))
    entries = list(entries)
    if entries:
        scopes.append(Scope.from_specs([e["cidr"] for e in entries], "the scope in the database"))
    if not scopes:
        return None
    return scopes[0] if len(scopes) == 1 else AllScopes(scopes)


def scope_reason(repo, ip, *, scope_file: str | None = None, exclude_files: Sequence[str] = ()) -> str | None:
    """Why pacswatch may not contact `ip` now, or None: the default blocklist, the opt-out list
    and the scope in the database (and a --scope or --exclude file when given), read now.

    The one check for anything that contacts a host outside a scan plan (`pacswatch probe`,
    attribution's fetches); `ip` is an address (text or ipaddress), IPv4-mapped IPv6 included."""
    reason = campaign_blocklist(repo.optouts(), exclude_files).reason_for(ip)
    if reason is None:
        scope = campaign_scope(scope_file, repo.scope_entries())
        reason = None if scope is None else scope.reason_for(ip)
    return reason


def contact_check(repo) -> Callable[[str], str | None]:
    """`scope_reason` for one database, as notify's service takes it (`may_contact`); read again
    at every call, so an opt-out or scope entry added meanwhile counts."""
    return lambda address: scope_reason(repo, address)


# PostgreSQL has no cheap "has anything changed" question; the list is read again this often.
POLL_SECONDS = 1.0


class _SqliteChanges:
    """Whether another connection has committed to an SQLite file since the last call
    (PRAGMA data_version, https://sqlite.org/pragma.html#pragma_data_version): a few
    microseconds, so it can be asked before every endpoint."""

    def __init__(self, path) -> None:
        from urllib.parse import quote

        # check_same_thread=False: the plan may be walked by an event loop in another thread.
        self._conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, check_same_thread=False,
                                     isolation_level=None)
        self._version = self._read()

    def _read(self) -> int:
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def __call__(self) -> bool:
        version = self._read()
        changed, self._version = version != self._version, version
        return changed


class _Every:
    """True at most once per `seconds` (for databases without a change counter)."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self._seconds, self._clock = seconds, clock
        self._last = clock()

    def __call__(self) -> bool:
        now = self._clock()
        if now - self._last < self._seconds:
            return False
        self._last = now
        return True


def _change_detector(repo):
    from pacswatch.store.engine import sqlite_path

    path = sqlite_path(repo.engine.url.render_as_string(hide_password=False))
    return _SqliteChanges(path) if path is not None else _Every(POLL_SECONDS)


class LiveBlocklist:
    """The campaign blocklist of a running scan, following the opt-out list in the database.

    The plan asks it about each endpoint as the scan takes it. On SQLite the list is read again
    whenever the file changed (every commit of any process, checked per endpoint); on PostgreSQL
    at most POLL_SECONDS after a change. An endpoint already taken (in flight, or waiting for its
    connection token) is not recalled. Duck-types Blocklist for ScanPlan."""

    def __init__(self, repo, exclude_files: Sequence[str] = (), exclude_texts: Sequence[tuple[str, str]] = ()) -> None:
        self._repo = repo
        # Defaults and --exclude: read once (or given as text, read by a distributed scan's command).
        self._fixed = campaign_blocklist((), exclude_files, exclude_texts)
        self._changed = _change_detector(repo)
        self._rows: tuple = ()
        self._current = self._fixed
        self._optouts: tuple[tuple[str, str], ...] = ()
        self._refresh()

    def _refresh(self) -> None:
        rows = self._repo.optouts()
        key = tuple((row["id"], row["cidr"]) for row in rows)
        if key != self._rows:  # most changes are the scan's own records, not the list
            self._rows = key
            entries = optout_entries(rows)
            self._current = self._fixed.with_entries(entries)
            self._optouts = tuple((row["cidr"], entry.reason) for row, entry in zip(rows, entries))

    def optouts(self) -> tuple[tuple[str, str], ...]:
        """The opt-out list now, as (address range, reason) pairs, read again if it changed:
        what a `--workers` scan sends its worker processes to refuse (scan/worker_pool.py)."""
        if self._changed():
            self._refresh()
        return self._optouts

    def reason_for_key(self, version: int, value: int) -> str | None:
        if self._changed():
            self._refresh()
        return self._current.reason_for_key(version, value)

    def reason_for(self, ip) -> str | None:
        if self._changed():
            self._refresh()
        return self._current.reason_for(ip)
