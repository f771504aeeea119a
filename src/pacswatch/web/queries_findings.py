"""The findings list: filters, sort, keyset pagination, and the rows a page or a download shows.

    f = FindingFilter.from_query(request.query_params)   # unknown or bad values are errors
    page = find_page(conn, f, now=clock())               # page.rows, page.next_cursor, page.total

Keyset pagination: a cursor is the last row's sort value and id, so page N costs what page 1
costs (no OFFSET over a hundred thousand rows). Every filter is a bound parameter; a network is
turned into address ranges on the text column (IPv4), or compared as inet on PostgreSQL (IPv6).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import String, and_, cast, func, or_, select, true, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from pacswatch.findings.lifecycle import ACTIVE, STATUSES
from pacswatch.findings.triage import STANDING
from pacswatch.store.notify_tables import attributions, case_services
from pacswatch.store.tables import findings, services
from pacswatch.store.web_tables import finding_triage

SEVERITIES = ("critical", "high", "medium", "low")
SORTS = ("severity", "last_seen", "first_seen", "address", "port", "product")
# By a person's standing verdict (finding_triage): none (no false positive, no suppression in
# force: what is left to act on), or only the false positives, or only the suppressed.
TRIAGE = ("none", "false-positive", "suppressed")
PAGE_SIZE = 50
MAX_PAGE = 200
MAX_NETWORK_RANGES = 128  # the most any prefix needs (a /17: 128 ranges of /24; a /25: 128 addresses)
MAX_TEXT = 100


class FilterError(ValueError):
    """A filter value that cannot be used, said in a sentence."""


@dataclass(frozen=True)
class FindingFilter:
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # "active" stands for open + reopened
    product: str | None = None  # substring, any case
    port: int | None = None
    owner: str | None = None  # substring of the attributed owner's name, any case
    network: str | None = None  # a CIDR
    first_seen_from: date | None = None
    first_seen_to: date | None = None
    last_seen_from: date | None = None
    last_seen_to: date | None = None
    q: str | None = None  # text: an address prefix, or part of the owner's name
    triage: str | None = None  # none | false-positive | suppressed: by a person's standing verdict
    sort: str = "severity"
    descending: bool = False
    cursor: str | None = None
    limit: int = PAGE_SIZE
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_query(cls, params: Mapping[str, str] | Any) -> "FindingFilter":
        """From a query string (a Starlette QueryParams or a plain mapping of lists)."""
        def many(name: str) -> list[str]:
            values = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
            return [v for value in values for v in str(value).split(",") if v.strip()]

        def one(name: str) -> str | None:
            values = many(name)
            text = values[-1].strip() if values else None
            if text is not None and len(text) > MAX_TEXT:
                raise FilterError(f"{name} is longer than {MAX_TEXT} characters")
            return text or None

        severities = tuple(dict.fromkeys(many("severity")))
        if bad := [s for s in severities if s not in SEVERITIES]:
            raise FilterError(f"unknown severity {bad[0]!r}: {', '.join(SEVERITIES)}")
        statuses = tuple(dict.fromkeys(many("status")))
        if bad := [s for s in statuses if s not in (*STATUSES, "active")]:
            raise FilterError(f"unknown status {bad[0]!r}: active, {', '.join(STATUSES)}")
        sort = one("sort") or "severity"
        descending = sort.startswith("-")
        sort = sort.lstrip("-")
        if sort not in SORTS:
            raise FilterError(f"cannot sort by {sort!r}: {', '.join(SORTS)} (- first for descending)")
        port = _int(one("port"), "port", 0, 65535)
        limit = _int(one("limit"), "limit", 1, MAX_PAGE) or PAGE_SIZE
        triage = one("triage")
        if triage is not None and triage not in TRIAGE:
            raise FilterError(f"unknown triage {triage!r}: {', '.join(TRIAGE)}")
        network = one("network")
        if network is not None:
            network_ranges(network)  # refuses a bad one now, with its reason
        return cls(severities=severities, statuses=statuses, product=one("product"), port=port, owner=one("owner"),
                   network=network, first_seen_from=_day(one("first_seen_from"), "first_seen_from"),
                   first_seen_to=_day(one("first_seen_to"), "first_seen_to"),
                   last_seen_from=_day(one("last_seen_from"), "last_seen_from"),
                   last_seen_to=_day(one("last_seen_to"), "last_seen_to"), q=one("q"), triage=triage, sort=sort,
                   descending=descending, cursor=one("cursor"), limit=limit)

    def query_items(self, *, cursor: str | None = None, **changes: Any) -> list[tuple[str, str]]:
        """This filter as query-string pairs (for links: the next page, a download, a sort)."""
        f = replace(self, cursor=cursor, **changes)
        items: list[tuple[str, str]] = [("severity", s) for s in f.severities] + [("status", s) for s in f.statuses]
        for name in ("product", "port", "owner", "network", "first_seen_from", "first_seen_to", "last_seen_from",
                     "last_seen_to", "q", "triage", "cursor"):
            value = getattr(f, name)
            if value is not None:
                items.append((name, value.isoformat() if isinstance(value, date) else str(value)))
        if f.sort != "severity" or f.descending:
            items.append(("sort", ("-" if f.descending else "") + f.sort))
        if f.limit != PAGE_SIZE:
            items.append(("limit", str(f.limit)))
        return items


def _int(text: str | None, name: str, low: int, high: int) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise FilterError(f"{name} must be between {low} and {high}")
    return value


def _day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name} must be a date (YYYY-MM-DD), not {text!r}") from None


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def _moment(day: date, dialect: str) -> Any:
    """The start of `day` (UTC) to compare with a moment column. On SQLite a column made an
    expression (_unindexed) compares as text, without the column's type to format the bound
    value: so the value is given as SQLite stores moments ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    moment = _start(day)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else moment


def network_ranges(cidr: str) -> list[tuple[str, str]] | None:
    """An IPv4 network as text ranges [low, high) of the address column: one per octet-aligned
    prefix it covers ('10.1.' to '10.1/' holds every 10.1.x.y, since '/' follows '.'). None for
    an IPv6 network (compared as inet on PostgreSQL). FilterError for what is not a network."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise FilterError(f"{cidr!r} is not a network (e.g. 192.0.2.0/24)") from None
    if net.version == 6:
        return None
    octets = -(-net.prefixlen // 8)  # the prefix rounded up to whole octets
    if octets == 0:
        return [("", "\U0010ffff")]
    if octets == 4:  # /25 to /32: each address, exactly
        return [(str(a), str(a) + "\0") for a in (net if net.prefixlen < 32 else [net.network_address])]
    step = 1 << (32 - octets * 8)
    count = 1 << (octets * 8 - net.prefixlen)
    if count > MAX_NETWORK_RANGES:
        raise FilterError(f"{cidr} is too finely cut to search: use a prefix length that is a multiple of 8 or "
                          "close to one")
    first = int(net.network_address)
    out = []
    for n in range(count):
        parts = str(ipaddress.IPv4Address(first + n * step)).split(".")[:octets]
        prefix = ".".join(parts) + "."
        out.append((prefix, prefix[:-1] + "/"))
    return out


# The services table again, for the product filter's EXISTS (the page's query joins services too).
_NAMED = services.alias("named_service")
# The owner of an address: the latest attribution (attribution/), if any.
_OWNER = attributions.c.owner_name
_SORT_COLUMNS: dict[str, ColumnElement] = {  # severity is sorted by _by_severity
    "last_seen": findings.c.last_seen,
    "first_seen": findings.c.first_seen,
    "address": findings.c.ip,
    "port": findings.c.port,
    "product": func.coalesce(services.c.product, ""),
}


def conditions(f: FindingFilter, dialect: str, *, for_count: bool = False,
               now: datetime | None = None) -> list[ColumnElement]:
    """The WHERE terms of a filter, on the findings' own columns (what is in a joined table is a
    subquery, so that an index on findings can drive the query). `for_count`: the form that is
    fastest for all the matches rather than a page of them."""
    out: list[ColumnElement] = []
    if f.severities:
        out.append(_unindexed(findings.c.severity, dialect).in_(f.severities))
    if f.statuses:
        wanted = {s for status in f.statuses for s in (ACTIVE if status == "active" else (status,))}
        out.append(_unindexed(findings.c.status, dialect).in_(sorted(wanted)))
    if f.product:
        named = func.lower(services.c.product).contains(f.product.lower(), autoescape=True)
        if for_count:
            # All of them: the services table is searched once, then the findings by (ip, port).
            out.append(tuple_(findings.c.ip, findings.c.port).in_(select(services.c.ip, services.c.port).where(named)))
        else:
            # A page: findings in the page's order, each checked by its service's index, until
            # the page is full.
            named_here = func.lower(_NAMED.c.product).contains(f.product.lower(), autoescape=True)
            out.append(select(_NAMED.c.id).where(_NAMED.c.ip == findings.c.ip, _NAMED.c.port == findings.c.port,
                                                 named_here).correlate(findings).exists())
    if f.port is not None:
        out.append(findings.c.port == f.port)
    if f.owner:
        out.append(findings.c.ip.in_(_owned_by(f.owner)))
    if f.network:
        ranges = network_ranges(f.network)
        if ranges is not None:
            out.append(or_(*(and_(findings.c.ip >= low, findings.c.ip < high) for low, high in ranges)))
        elif dialect == "postgresql":
            out.append(and_(findings.c.ip.contains(":"), cast(findings.c.ip, INET).op("<<=")(cast(f.network, INET))))
        else:
            out.append(_ipv6_in_sqlite(f.network))
    # A date range drives the query only when the page is in that date's order: otherwise the
    # page's order does, and the range is checked row by row (reading a third of the table by
    # first_seen and sorting it by address took 0.3 s; the address order stops at a full page).
    first_seen = findings.c.first_seen if f.sort == "first_seen" or for_count else _unindexed(findings.c.first_seen, dialect)
    last_seen = findings.c.last_seen if f.sort == "last_seen" or for_count else _unindexed(findings.c.last_seen, dialect)
    if f.first_seen_from:
        out.append(first_seen >= _moment(f.first_seen_from, dialect))
    if f.first_seen_to:
        out.append(first_seen < _moment(f.first_seen_to + timedelta(days=1), dialect))
    if f.last_seen_from:
        out.append(last_seen >= _moment(f.last_seen_from, dialect))
    if f.last_seen_to:
        out.append(last_seen < _moment(f.last_seen_to + timedelta(days=1), dialect))
    if f.triage:
        marked = marked_by_person(f.triage, now)
        out.append(findings.c.id.not_in(marked) if f.triage == "none" else findings.c.id.in_(marked))
    if f.q:
        # An address prefix as a range of the indexed text, not LIKE (case-blind, so unindexed).
        out.append(or_(and_(findings.c.ip >= f.q, findings.c.ip < f.q + "\U0010ffff"),
                       findings.c.ip.in_(_owned_by(f.q))))
    return out


def _unindexed(column: Any, dialect: str) -> ColumnElement:
    """The column as an expression no index serves. Status and severity match a large share of
    the table: let the page's order (an index on severity, first/last seen or the address) drive
    the query and stop at a full page, rather than read every active finding and sort them
    (SQLite picked the status index: 0.6 s instead of 0.02 s at 100,000 findings). PostgreSQL
    costs an ORDER BY ... LIMIT against the filters itself: the column is left as it is."""
    # As text: `|| ''` on a moment column is the same SQL, but SQLAlchemy deprecates concat on DateTime.
    return column if dialect == "postgresql" else type_coerce(column, String()).concat("")


def marked_by_person(verdict: str, now: datetime | None) -> Any:
    """Findings whose latest standing verdict is a false positive, or a suppression still in
    force at `now` ("none": either); the verdicts are few, so this reads little."""
    now = now or datetime.now(timezone.utc)
    latest = select(func.max(finding_triage.c.id)).where(finding_triage.c.action.in_(STANDING)) \
        .group_by(finding_triage.c.finding_id)
    false_positive = finding_triage.c.action == "false-positive"
    suppressed = and_(finding_triage.c.action == "suppressed",
                      or_(finding_triage.c.until.is_(None), finding_triage.c.until > now))
    which = {"false-positive": false_positive, "suppressed": suppressed}.get(verdict, or_(false_positive, suppressed))
    return select(finding_triage.c.finding_id).where(finding_triage.c.id.in_(latest), which)


def _owned_by(text: str) -> Any:
    """The addresses whose attributed owner's name contains `text` (any case)."""
    return select(attributions.c.ip).where(func.lower(_OWNER).contains(text.lower(), autoescape=True))


def _ipv6_in_sqlite(cidr: str) -> ColumnElement:
    # SQLite has no address type, and IPv6 text shares no prefix in general ('::' compresses):
    # sqlbits.register_sqlite_functions gives it pacswatch_in_network(ip, cidr) for this.
    return func.pacswatch_in_network(findings.c.ip, str(ipaddress.ip_network(cidr, strict=False))) == 1


def _base(columns: list) -> Any:
    return (select(*columns).select_from(findings)
            .join(services, and_(services.c.ip == findings.c.ip, services.c.port == findings.c.port), isouter=True)
            .join(attributions, attributions.c.ip == findings.c.ip, isouter=True))


ROW_COLUMNS = [findings.c.id, findings.c.ip, findings.c.port, findings.c.severity, findings.c.status,
               findings.c.first_seen, findings.c.last_seen, findings.c.fixed_at, findings.c.reopen_count,
               services.c.service, services.c.transport, services.c.product, services.c.product_version,
               services.c.studies, services.c.patients, _OWNER.label("owner")]


@dataclass
class FindingsPage:
    rows: list[dict[str, Any]]
    next_cursor: str | None
    total: int


def encode_cursor(value: Any, row_id: int) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        if not isinstance(row_id, int) or not isinstance(value, (int, str, datetime)):
            raise ValueError
        return value, row_id
    except (ValueError, TypeError, KeyError):
        raise FilterError("the page link is damaged: start from the first page") from None


COUNT_CAP = 10_000  # "more than 10,000": a count past this says nothing a person needs


def _after(f: FindingFilter, key: ColumnElement) -> ColumnElement:
    if not f.cursor:
        return true()
    value, row_id = decode_cursor(f.cursor)
    if f.descending:
        return or_(key < value, and_(key == value, findings.c.id < row_id))
    return or_(key > value, and_(key == value, findings.c.id > row_id))


def _ordered(f: FindingFilter, query: Any, key: ColumnElement) -> Any:
    if f.descending:
        return query.order_by(key.desc(), findings.c.id.desc())
    return query.order_by(key, findings.c.id)


def _sort_value(f: FindingFilter, row: Mapping[str, Any]) -> Any:
    if f.sort == "severity":
        return _rank(row["severity"])
    if f.sort == "address":
        return row["ip"]
    if f.sort == "product":
        return row["product"] or ""
    return row[f.sort]


def _rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _by_severity(conn: Connection, f: FindingFilter, where: list[ColumnElement]) -> list[dict[str, Any]]:
    """Severity order without sorting the table: one query per severity, in rank order, each
    in id order from the index on severity, until the page (and one row more) is full."""
    ranks = range(len(SEVERITIES))
    start_rank, start_id = decode_cursor(f.cursor) if f.cursor else (None, None)
    if not isinstance(start_rank, int) and start_rank is not None:
        raise FilterError("the page link is damaged: start from the first page")
    rows: list[dict[str, Any]] = []
    for rank in (reversed(ranks) if f.descending else ranks):
        if start_rank is not None and (rank > start_rank if f.descending else rank < start_rank):
            continue
        query = _base(ROW_COLUMNS).where(*where, findings.c.severity == SEVERITIES[rank])
        if rank == start_rank:
            query = query.where(findings.c.id < start_id if f.descending else findings.c.id > start_id)
        query = query.order_by(findings.c.id.desc() if f.descending else findings.c.id)
        rows += [dict(r) for r in conn.execute(query.limit(f.limit + 1 - len(rows))).mappings()]
        if len(rows) > f.limit:
            break
    return rows


def count_matching(conn: Connection, f: FindingFilter, now: datetime | None = None) -> int:
    """How many findings match, counted up to COUNT_CAP + 1 (the page says 'more than')."""
    where = conditions(f, conn.dialect.name, for_count=True, now=now)
    capped = select(findings.c.id).where(*where).limit(COUNT_CAP + 1).subquery()
    return conn.execute(select(func.count()).select_from(capped)).scalar_one()


def find_page(conn: Connection, f: FindingFilter, *, with_total: bool = True,
              now: datetime | None = None) -> FindingsPage:
    """A page of findings; `now` is when a suppression is in force (the server's clock)."""
    where = conditions(f, conn.dialect.name, now=now)
    if f.sort == "severity":
        rows = _by_severity(conn, f, where)
    else:
        key = _SORT_COLUMNS[f.sort]
        query = _ordered(f, _base(ROW_COLUMNS).where(*where, _after(f, key)), key).limit(f.limit + 1)
        rows = [dict(r) for r in conn.execute(query).mappings()]
    more = len(rows) > f.limit
    rows = rows[:f.limit]
    _add_case_and_triage(conn, rows, now)
    next_cursor = encode_cursor(_sort_value(f, rows[-1]), rows[-1]["id"]) if more and rows else None
    total = count_matching(conn, f, now) if with_total else -1
    return FindingsPage(rows, next_cursor, total)


def iterate(conn: Connection, f: FindingFilter, batch: int = 1000,
            now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every finding the filter selects, in its order, a batch at a time (downloads)."""
    f = replace(f, cursor=None, limit=batch)
    while True:
        page = find_page(conn, f, with_total=False, now=now)
        yield from page.rows
        if page.next_cursor is None:
            return
        f = replace(f, cursor=page.next_cursor)


def _add_case_and_triage(conn: Connection, rows: list[dict[str, Any]], now: datetime | None) -> None:
    """The case each row's service is in, and a person's latest verdict on it (one query each
    for the page's rows, not a join over the whole table)."""
    if not rows:
        return
    ips = sorted({r["ip"] for r in rows})
    cases = {(c.ip, c.port): c.case_id for c in conn.execute(
        select(case_services.c.ip, case_services.c.port, case_services.c.case_id)
        .where(case_services.c.ip.in_(ips)))}
    ids = [r["id"] for r in rows]
    latest: dict[int, Any] = {}
    for t in conn.execute(select(finding_triage).where(finding_triage.c.finding_id.in_(ids))
                          .order_by(finding_triage.c.at, finding_triage.c.id)):
        if t.action in STANDING:
            latest[t.finding_id] = t
    for row in rows:
        row["case_id"] = cases.get((row["ip"], row["port"]))
        verdict = latest.get(row["id"])
        row["triage"] = triage_label(verdict, now)


def triage_label(verdict: Any, now: datetime | None = None) -> str | None:
    """'false positive', 'suppressed until YYYY-MM-DD', or None (none, cleared, or expired)."""
    if verdict is None or verdict.action == "cleared":
        return None
    if verdict.action == "false-positive":
        return "false positive"
    until = verdict.until
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    if until is not None and until <= (now or datetime.now(timezone.utc)):
        return None
    return f"suppressed until {until:%Y-%m-%d}" if until else "suppressed"
