"""The one repository: every read and write of the database goes through here.

It moves rows; it decides nothing. What a batch of records does to services and findings is
decided by `pacswatch.findings.ingest.plan_batch`, a pure function, and written here in one
transaction, together with the scan's completed work, so that the database never says an
endpoint is done without also holding what was found there. The rows of a batch go through
store/bulk.py: the statements Core compiles, without Core's work per row, since the store shares
the GIL with the scanner.

Writes run in `BEGIN IMMEDIATE` transactions on SQLite (one writer at a time, decided at BEGIN);
readers are never blocked by the writer (WAL).
"""

from __future__ import annotations

import getpass
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import (JSON, BigInteger, ColumnElement, Integer, String, any_, bindparam, delete, func, insert,
                        literal_column, or_, select, tuple_, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from pacswatch import __version__
from pacswatch.deception import DEFAULT_THRESHOLD
from pacswatch.findings.ingest import BatchPlan, finding_state, plan_batch
from pacswatch.findings.lifecycle import ACTIVE, Key, opt_out
from pacswatch.findings.schedule import RescanPolicy, due_after
from pacswatch.findings.triage import STANDING, Verdict, in_force, standing
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.bulk import BulkStatement
from pacswatch.store.engine import open_database
from pacswatch.store.errors import StoreError
from pacswatch.store.stats import exposure_stats
from pacswatch.store.tables import (
    RawJson,
    finding_events,
    findings,
    observations,
    optouts,
    scan_work,
    scans,
    scope_entries,
    services,
    settings,
    shards,
)
from pacswatch.store.web_tables import finding_triage
from pacswatch.targets import BlockEntry, Blocklist
from pacswatch.targets.parse import parse_address_range

Row = dict[str, Any]


@dataclass(frozen=True)
class ShardSpan:
    """A shard of a distributed scan as ingest needs it: its row and its plan indexes."""

    shard_id: int
    first: int
    last: int


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def operator() -> str:
    """Who runs this: user@host, recorded with every scan, opt-out and scope entry."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name (containers without a passwd entry)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _row(mapping) -> Row:
    # SQLite returns datetimes without their zone; everything stored is UTC.
    return {k: (v.replace(tzinfo=timezone.utc) if isinstance(v, datetime) and v.tzinfo is None else v)
            for k, v in dict(mapping).items()}


def _by_key_query(table, backend: str):
    """The rows of a batch's endpoints, matched on (ip, port) through the unique index.

    The keys go as one parameter (a JSON array of [ip, port] on SQLite, two arrays on PostgreSQL),
    not as an IN list, which Core expands into new SQL for every batch and SQLite caps in
    length; and on the whole key, since by address alone a multi-port scan reads (and Core
    converts) every other port's row of the batch's addresses too."""
    ip: ColumnElement[Any]
    port: ColumnElement[Any]
    if backend == "postgresql":
        keys = (func.unnest(bindparam("ips", type_=ARRAY(String)), bindparam("ports", type_=ARRAY(Integer)))
                .table_valued("ip", "port").render_derived().alias("k"))
        ip, port = keys.c.ip, keys.c.port
    else:
        keys = func.json_each(bindparam("keys", type_=JSON)).table_valued("value").alias("k")
        ip, port = (func.json_extract(keys.c.value, literal_column(f"'$[{i}]'")) for i in (0, 1))
    return select(table).select_from(keys).join(table, (table.c.ip == ip) & (table.c.port == port))


# The ingest path's statements, built once: Core caches what it compiles, but keying that cache
# for a statement built anew costs more than running it (a few hundred µs a batch).
_BY_KEY = {backend: {t.name: _by_key_query(t, backend) for t in (services, findings)}
           for backend in ("sqlite", "postgresql")}
_MAX_ID = {t.name: select(func.coalesce(func.max(t.c.id), 0)) for t in (observations, findings)}
_NEXT_IDS = {t.name: select(func.nextval(func.pg_get_serial_sequence(t.name, "id")))
             .select_from(func.generate_series(1, bindparam("count"))) for t in (observations, findings)}
# Locked (PostgreSQL): workers of a distributed scan add to the same row at once. FOR NO KEY
# UPDATE, the lock the UPDATE takes anyway: it does not conflict with the KEY SHARE lock that
# each transaction's inserts referring to the scan hold (FOR UPDATE would, and deadlock).
_COUNTS = (select(scans.c.counts, scans.c.done).where(scans.c.id == bindparam("scan_id"))
           .with_for_update(key_share=True))
_FORGET_WORK = delete(scan_work).where(scan_work.c.scan_id == bindparam("scan_id"))
# The first indexes go as one parameter, as _by_key's keys do: an IN list would be new SQL for
# Core to compile every batch.
_FORGET_INTERVALS = {
    "sqlite": delete(scan_work).where(scan_work.c.scan_id == bindparam("scan_id"), scan_work.c.first_index.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam("firsts", type_=JSON))))),
    "postgresql": delete(scan_work).where(scan_work.c.scan_id == bindparam("scan_id"),
                                          scan_work.c.first_index == any_(bindparam("firsts", type_=ARRAY(BigInteger)))),
}
_UPDATE_SCAN = update(scans).where(scans.c.id == bindparam("b_scan_id"))


def networks_matcher(networks: Iterable[str]) -> Blocklist:
    """A Blocklist of exactly `networks` (no defaults): its reason_for(ip) is not None for an
    address inside one of them, an IPv4-mapped IPv6 address (::ffff:192.0.2.7) included.
    A mapped IPv6 network (::ffff:192.0.2.0/120) is taken as the IPv4 network it spells."""
    entries = []
    for text in networks:
        version, first, last = parse_address_range(str(text))
        if version == 6 and first >> 32 == 0xFFFF and last >> 32 == 0xFFFF:
            version, first, last = 4, first & 0xFFFF_FFFF, last & 0xFFFF_FFFF
        entries.append(BlockEntry((version, first, last), str(text)))
    return Blocklist(entries)


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._bulk: dict[tuple[str, str], BulkStatement] = {}  # compiled for this engine's dialect
        # Per scan, the completed-work set whose changes since its last take_changes() are all that
        # scan_work lacks: this process committed the rest (see _progress).
        self._work_written: dict[int, IntervalSet] = {}

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False) -> "Repository":
        return cls(open_database(url, upgrade=upgrade))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Repository":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(pacswatch_write=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise StoreError(f"database write failed: {exc.orig}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise StoreError(f"database read failed: {exc.orig}") from exc

    def _all(self, query) -> list[Row]:
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query).mappings()]

    # ------------------------------------------------------------------ scans

    def create_scan(self, *, kind: str, parameters: dict, seed: int, fingerprint: str, targets_key: str,
                    plan_size: int, command: str | None = None) -> int:
        at = now_utc()
        with self._write() as conn:
            return conn.execute(insert(scans).returning(scans.c.id), {
                "kind": kind, "status": "running", "operator": operator(), "command": command,
                "parameters": parameters, "seed": seed, "plan_fingerprint": fingerprint,
                "targets_key": targets_key, "plan_size": plan_size, "done": 0, "counts": {},
                "created_at": at, "updated_at": at, "pid": os.getpid(), "host": socket.gethostname(),
                "version": __version__}).scalar_one()

    def scan(self, scan_id: int) -> Row | None:
        rows = self._all(select(scans).where(scans.c.id == scan_id))
        return rows[0] if rows else None

    def scans(self, limit: int | None = 50, *, kind: str | None = None, statuses: Iterable[str] = ()) -> list[Row]:
        query = select(scans)
        if kind is not None:
            query = query.where(scans.c.kind == kind)
        if statuses := list(statuses):
            query = query.where(scans.c.status.in_(statuses))
        return self._all(query.order_by(scans.c.id.desc()).limit(limit))

    def claim_scan(self, scan_id: int) -> None:
        """This process now runs the scan (a resume): the heartbeat and pid say so."""
        with self._write() as conn:
            conn.execute(update(scans).where(scans.c.id == scan_id).values(
                status="running", pid=os.getpid(), host=socket.gethostname(), updated_at=now_utc()))

    def finish_scan(self, scan_id: int, status: str) -> None:
        at = now_utc()
        with self._write() as conn:
            conn.execute(update(scans).where(scans.c.id == scan_id).values(
                status=status, updated_at=at, finished_at=at if status == "finished" else None))

    def heartbeat(self, scan_id: int) -> None:
        with self._write() as conn:
            conn.execute(update(scans).where(scans.c.id == scan_id).values(updated_at=now_utc()))

    def completed(self, scan_id: int) -> IntervalSet:
        with self._read() as conn:
            rows = conn.execute(select(scan_work.c.first_index, scan_work.c.last_index)
                                .where(scan_work.c.scan_id == scan_id)).all()
        return IntervalSet((int(a), int(b)) for a, b in rows)

    def previous_scan(self, scan_id: int) -> Row | None:
        """The latest earlier scan of the same targets and ports (any seed)."""
        current = self.scan(scan_id)
        if current is None:
            return None
        rows = self._all(select(scans).where(scans.c.targets_key == current["targets_key"], scans.c.id < scan_id)
                         .order_by(scans.c.id.desc()).limit(1))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ ingest

    def ingest(self, scan_id: int, items: Sequence[tuple[int | None, Record]], *, work: IntervalSet | None = None,
               policy: RescanPolicy | None = None, keep_all: bool = False, shard: ShardSpan | None = None,
               vantage: str | None = None) -> BatchPlan:
        """Store a batch of records of scan `scan_id` and, with `work`, its completed indexes.

        `shard` (a distributed scan's worker): the batch belongs to that shard, whose completed
        indexes the database holds (not `work`); indexes already stored are skipped, under the
        shard's row lock, so a shard delivered twice stores each endpoint once. `vantage`: where
        the records were seen from, on each observation."""
        policy = policy or RescanPolicy()
        # Until this batch commits, scan_work is not known to match `work` but for its changes: a
        # failed batch took them (_progress), so the next one rewrites every interval.
        written = self._work_written.pop(scan_id, None)
        with self._write() as conn:
            if self.backend == "postgresql":
                # Lookups by key must use the (ip, port) index. Right after a bulk load the planner
                # has no statistics yet (autovacuum analyzes up to a minute later) and picks a
                # sequential scan that compares every row with every key: 100x slower at 100k rows.
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            if shard is not None:
                work, items = self._shard_work(conn, scan_id, shard, items)
            keys = {(r.ip, r.port) for _, r in items}
            known_services = self._by_key(conn, services, keys)
            known_findings = self._by_key(conn, findings, keys)
            plan = plan_batch(items, known_services, known_findings, scan_id=scan_id, policy=policy,
                              keep_all=keep_all, vantage=vantage)
            memo: dict = {}  # values processed for the database in this batch (BulkStatement)
            # The plan's rows are this batch's own (plan_batch builds or copies each): what the
            # database adds to them (ids, which observation) is set in place, not in copies.
            obs_ids = self._allocate(conn, observations, len(plan.observations))
            for row, row_id in zip(plan.observations, obs_ids):
                row["id"], row["record"], row["vantage"] = row_id, RawJson(row["record"]), vantage
            self._bulk_write(conn, "insert-id", observations, memo, plan.observations)
            for row in (*plan.services_new, *plan.services_changed, *plan.findings_new, *plan.findings_changed):
                if row.get("_obs") is not None:  # else the row keeps its last_observation_id
                    row["last_observation_id"] = obs_ids[row["_obs"]]
            self._bulk_write(conn, "insert", services, memo, plan.services_new)
            self._bulk_write(conn, "update", services, memo, plan.services_changed)
            finding_ids: dict[Key, int] = {k: r["id"] for k, r in known_findings.items()}
            new_ids = self._allocate(conn, findings, len(plan.findings_new))
            for row, row_id in zip(plan.findings_new, new_ids):
                row["id"] = finding_ids[row["_key"]] = row_id
            self._bulk_write(conn, "insert-id", findings, memo, plan.findings_new)
            self._bulk_write(conn, "update", findings, memo, plan.findings_changed)
            for event in plan.events:
                event["finding_id"], event["observation_id"] = finding_ids[event["_key"]], obs_ids[event["_obs"]]
                event["marked_by"] = event["reason"] = None  # a scan's events: no analyst's mark
            self._bulk_write(conn, "insert", finding_events, memo, plan.events)
            self._progress(conn, scan_id, plan, work, shard, written)
        if work is not None and shard is None:  # committed: the next batch writes only its changes
            self._work_written[scan_id] = work
        return plan

    def _shard_work(self, conn: Connection, scan_id: int, shard: ShardSpan,
                    items: Sequence[tuple[int | None, Record]]) -> tuple[IntervalSet, list]:
        """The shard's completed indexes with this batch's added, and the batch without the
        indexes already stored. The shard's row is locked until commit: another delivery of the
        same shard waits here and then sees this batch as stored."""
        conn.execute(select(shards.c.id).where(shards.c.id == shard.shard_id).with_for_update())
        done = self._span(conn, scan_id, shard)
        fresh = [(i, r) for i, r in items if i is not None and shard.first <= i <= shard.last and i not in done]
        for index, _ in fresh:
            done.add(index)
        return done, fresh

    @staticmethod
    def _span(conn: Connection, scan_id: int, shard: ShardSpan) -> IntervalSet:
        rows = conn.execute(select(scan_work.c.first_index, scan_work.c.last_index).where(
            scan_work.c.scan_id == scan_id, scan_work.c.first_index >= shard.first,
            scan_work.c.first_index <= shard.last)).all()
        return IntervalSet((int(a), int(b)) for a, b in rows)

    def shard_done(self, scan_id: int, shard: ShardSpan) -> IntervalSet:
        """The completed indexes of one shard (its intervals never cross its bounds)."""
        with self._read() as conn:
            return self._span(conn, scan_id, shard)

    def _bulk_write(self, conn: Connection, kind: str, table, memo: dict, rows: list[Row]) -> None:
        """`rows` written as one executemany (store/bulk.py: Core's statement, without Core's
        work per row). Updates set every column but "id" to the row's values, as inserts do."""
        if not rows:
            return
        statement = self._bulk.get((kind, table.name))
        if statement is None:
            statement = self._bulk[(kind, table.name)] = BulkStatement(kind, table, self.engine.dialect)
        statement.execute(conn, rows, memo)

    def _allocate(self, conn: Connection, table, count: int) -> list[int]:
        """Ids for `count` new rows, so that they can be inserted without RETURNING: a plain
        executemany is several times faster than a multi-row INSERT ... RETURNING (psycopg
        parses that long statement anew for every batch)."""
        if count == 0:
            return []
        if self.backend == "postgresql":
            return list(conn.execute(_NEXT_IDS[table.name], {"count": count}).scalars())
        # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so max(id) stays ours.
        top = conn.execute(_MAX_ID[table.name]).scalar_one()
        return list(range(top + 1, top + 1 + count))

    def _by_key(self, conn: Connection, table, keys: set[Key]) -> dict[Key, Row]:
        """The rows of `table` at `keys`, for plan_batch. Their datetimes are left as the driver
        gives them (SQLite's without a zone): plan_batch reads each one through `utc`, and what
        it writes back unchanged is stored as the same text."""
        if not keys:
            return {}
        if self.backend == "postgresql":
            params = {"ips": [ip for ip, _ in keys], "ports": [port for _, port in keys]}
        else:
            params = {"keys": list(keys)}  # JSON: [[ip, port], ...]
        result = conn.execute(_BY_KEY[self.backend][table.name], params)
        names = list(result.keys())
        rows = (dict(zip(names, values)) for values in result)
        return {(row["ip"], row["port"]): row for row in rows}

    def _progress(self, conn: Connection, scan_id: int, plan: BatchPlan, work: IntervalSet | None,
                  shard: ShardSpan | None = None, written: IntervalSet | None = None) -> None:
        """The scan's counts and, with `work`, its done intervals. When `written` is `work` (this
        process committed it for the previous batch), only the intervals that changed since then
        are deleted and inserted: in a scan taken in random order with thousands in flight the
        done set is thousands of intervals, and writing them all for every batch was 7% of a
        scan's CPU (bench/README.md, "Speed, measured"); comparing them all, 4 µs per record.
        Otherwise (the first batch: the table may hold a resumed scan's, or another process's)
        they are all rewritten. With `shard` (a distributed worker's batch), `work` is that
        shard's intervals alone, and they are rewritten (other workers write the scan's others)."""
        counts, done = conn.execute(_COUNTS, {"scan_id": scan_id}).one()
        counts = dict(counts or {})
        for status, n in plan.counts.items():
            counts[status] = counts.get(status, 0) + n
        values: dict[str, Any] = {"counts": counts, "updated_at": now_utc()}
        if shard is not None and work is not None:  # only this shard's intervals are rewritten
            values["done"] = (done or 0) + sum(plan.counts.values())
            conn.execute(delete(scan_work).where(scan_work.c.scan_id == scan_id, scan_work.c.first_index >= shard.first,
                                                 scan_work.c.first_index <= shard.last))
            if shard_intervals := work.intervals():
                conn.execute(insert(scan_work), [{"scan_id": scan_id, "first_index": a, "last_index": b}
                                                 for a, b in shard_intervals])
        elif work is not None:
            values["done"] = len(work)
            if written is work:
                gone, new = work.take_changes()
                if gone:  # the deletes go first: a grown interval keeps its first index (the key)
                    conn.execute(_FORGET_INTERVALS[self.backend], {"scan_id": scan_id, "firsts": gone})
            else:
                work.take_changes()  # from here on, its changes are recorded
                conn.execute(_FORGET_WORK, {"scan_id": scan_id})
                new = work.intervals()
            self._bulk_write(conn, "insert", scan_work, {}, [{"scan_id": scan_id, "first_index": a, "last_index": b}
                                                            for a, b in new])
        conn.execute(_UPDATE_SCAN, {**values, "b_scan_id": scan_id})

    # ------------------------------------------------------------------ queries

    def findings(self, *, severities: Iterable[str] = (), statuses: Iterable[str] = (),
                 since: datetime | None = None, ips: Iterable[str] | None = None) -> list[Row]:
        """Findings with their service's product and transport, worst and newest first; `capped`
        when its counts stopped at --find-limit ('at least'), as the record of the look that
        counted them (the service's last answer: a later miss keeps the counts) says."""
        capped = (select(observations.c.record[("dicom", "find", "capped")].as_boolean())
                  .where(observations.c.ip == services.c.ip, observations.c.port == services.c.port,
                         observations.c.scanned_at == services.c.last_seen)
                  .order_by(observations.c.id.desc()).limit(1).scalar_subquery())
        query = (select(findings, services.c.product, services.c.product_version, services.c.service,
                        services.c.transport, services.c.studies, services.c.patients, capped.label("capped"))
                 .join(services, (services.c.ip == findings.c.ip) & (services.c.port == findings.c.port),
                       isouter=True))
        if severities := list(severities):
            query = query.where(findings.c.severity.in_(severities))
        if statuses := list(statuses):
            query = query.where(findings.c.status.in_(statuses))
        if since is not None:
            query = query.where(or_(findings.c.last_seen >= since, findings.c.fixed_at >= since))
        if ips is not None:  # one case's addresses (the dashboard's case pages)
            query = query.where(findings.c.ip.in_(sorted(set(ips))))
        return self._all(query.order_by(findings.c.last_seen.desc(), findings.c.id))

    def events(self, *, finding_ids: Iterable[int] = (), scan_id: int | None = None, ip: str | None = None,
               port: int | None = None) -> list[Row]:
        # look_status: what the look behind the event said (connection-refused, ...), for history.
        query = (select(finding_events, findings.c.ip, findings.c.port, observations.c.status.label("look_status"))
                 .join(findings, findings.c.id == finding_events.c.finding_id)
                 .join(observations, observations.c.id == finding_events.c.observation_id, isouter=True))
        if ip is not None:
            query = query.where(findings.c.ip == ip)
        if port is not None:
            query = query.where(findings.c.port == port)
        if ids := list(finding_ids):
            query = query.where(finding_events.c.finding_id.in_(ids))
        if scan_id is not None:
            query = query.where(finding_events.c.scan_id == scan_id)
        return self._all(query.order_by(finding_events.c.at, finding_events.c.id))

    def observations(self, *, ip: str | None = None, port: int | None = None, scan_id: int | None = None,
                     limit: int | None = None) -> list[Row]:
        query = select(observations)
        if ip is not None:
            query = query.where(observations.c.ip == ip)
        if port is not None:
            query = query.where(observations.c.port == port)
        if scan_id is not None:
            query = query.where(observations.c.scan_id == scan_id)
        return self._all(query.order_by(observations.c.scanned_at, observations.c.id).limit(limit))

    def services(self, *, due_before: datetime | None = None, limit: int | None = None,
                 held: Iterable[tuple[str, int]] = ()) -> list[Row]:
        """Services in next-due order; `held` (ip, port) left out (findings/triage.held_services:
        suppressed by a person until a date; they are few)."""
        query = select(services)
        if due_before is not None:
            query = query.where(services.c.next_due <= due_before)
        if held := sorted(held):
            query = query.where(tuple_(services.c.ip, services.c.port).not_in(held))
        return self._all(query.order_by(services.c.next_due, services.c.id).limit(limit))

    def replan(self, policy: RescanPolicy) -> int:
        """Every service's next look as `policy` sets it (schedule.due_after, from its last look
        and its finding), where that differs from the one stored: a `run` with other intervals
        than those that scheduled a service applies them at once. The number changed."""
        query = (select(services.c.id, services.c.last_checked, services.c.status, services.c.severity,
                        services.c.next_due, findings.c.status.label("f_status"),
                        findings.c.severity.label("f_severity"), findings.c.first_seen, findings.c.last_seen,
                        findings.c.fixed_at, findings.c.reopened_at, findings.c.reopen_count,
                        findings.c.missed_since)
                 .join(findings, (findings.c.ip == services.c.ip) & (findings.c.port == services.c.port),
                       isouter=True))
        with self._write() as conn:
            changed = []
            for row in (_row(r) for r in conn.execute(query).mappings()):
                finding = None if row["f_status"] is None else finding_state(
                    {**row, "status": row["f_status"], "severity": row["f_severity"]})
                next_due = due_after(policy, row["last_checked"], row["status"], row["severity"], finding)
                if next_due != row["next_due"]:
                    changed.append({"b_id": row["id"], "next_due": next_due})
            if changed:
                conn.execute(update(services).where(services.c.id == bindparam("b_id"))
                             .values(next_due=bindparam("next_due")), changed)
        return len(changed)

    def triage(self) -> dict[int, Verdict]:
        """Each finding's latest standing verdict by a person (the dashboard's false positive,
        suppression, clearing), with its service's address: findings/triage.py decides with it."""
        query = (select(finding_triage, findings.c.ip, findings.c.port)
                 .join(findings, findings.c.id == finding_triage.c.finding_id)
                 .where(finding_triage.c.action.in_(STANDING))
                 .order_by(finding_triage.c.at, finding_triage.c.id))
        return standing(self._all(query))

    def setting(self, name: str) -> Any:
        """The value stored under `name` (JSON), or None."""
        rows = self._all(select(settings.c.value).where(settings.c.name == name))
        return rows[0]["value"] if rows else None

    def set_setting(self, name: str, value: Any) -> None:
        with self._write() as conn:  # replace: one statement pair, portable across both backends
            conn.execute(delete(settings).where(settings.c.name == name))
            conn.execute(insert(settings), {"name": name, "value": value, "updated_at": now_utc()})

    def severities(self, scan_id: int) -> dict[Key, str | None]:
        """Endpoint -> severity as scan `scan_id` saw it (the last look wins), for diff_scans."""
        rows = self.observations(scan_id=scan_id)
        return {(r["ip"], r["port"]): r["severity"] for r in rows}

    def mark_finding(self, finding_id: int, override: str, reason: str, *, at: datetime | None = None) -> Row | None:
        """An analyst's decision on a finding's deception verdict ('real' or 'honeypot'), with
        the reason, who and when; it wins over the signals (deception.effective) and is kept in
        the finding's history as an event. None when there is no such finding."""
        if override not in ("real", "honeypot"):
            raise ValueError(f"a finding is marked real or honeypot, not {override!r}")
        at = at or now_utc()
        with self._write() as conn:
            row = conn.execute(select(findings).where(findings.c.id == finding_id)).mappings().first()
            if row is None:
                return None
            by = operator()
            conn.execute(update(findings).where(findings.c.id == finding_id).values(
                deception_override=override, override_reason=reason, override_by=by, override_at=at))
            # The event keeps its own who and why: the finding's are overwritten by the next mark.
            conn.execute(insert(finding_events).values(finding_id=finding_id, at=at, kind=f"marked-{override}",
                                                       old_severity=row["severity"], new_severity=row["severity"],
                                                       marked_by=by, reason=reason))
        with self._read() as conn:
            return _row(conn.execute(select(findings).where(findings.c.id == finding_id)).mappings().one())

    def stats(self, *, history: int = 20, threshold: float = DEFAULT_THRESHOLD,
              now: datetime | None = None) -> dict[str, Any]:
        """Exposure now and over the last `history` scans (store/stats.py), with opted-out
        findings, traps at `threshold` and a person's standing verdicts counted apart."""
        # The verdicts are few: their ids go into the query.
        holding = {fid: held for fid, v in self.triage().items() if (held := in_force(v, now or now_utc()))}
        with self._read() as conn:
            return exposure_stats(conn, holding, history=history, threshold=threshold)

    # ------------------------------------------------------------------ opt-out and scope

    def add_optout(self, cidr: str, contact: str, *, requested_at: datetime | None = None,
                   note: str | None = None, added_by: str | None = None) -> int:
        at = now_utc()
        with self._write() as conn:
            return conn.execute(insert(optouts).returning(optouts.c.id), {
                "cidr": cidr, "contact": contact, "requested_at": requested_at or at, "added_at": at,
                "added_by": added_by or operator(), "note": note}).scalar_one()

    def optouts(self) -> list[Row]:
        return self._all(select(optouts).order_by(optouts.c.id))

    def remove_optout(self, entry_id: int) -> bool:
        with self._write() as conn:
            return conn.execute(delete(optouts).where(optouts.c.id == entry_id)).rowcount > 0

    def close_opted_out(self, networks: Iterable[str], *, at: datetime | None = None) -> list[Row]:
        """Close every active finding whose address lies in `networks` (addresses, CIDRs or
        ranges, as the opt-out list holds them) as `opted-out`, with an event; the findings
        closed now, with their id, ip, port and severity. An IPv4-mapped IPv6 address or
        network counts as its IPv4 form. Idempotent: findings already closed are left alone."""
        matcher = networks_matcher(networks)
        at = at or now_utc()
        closed: list[Row] = []
        with self._write() as conn:
            rows = [_row(r) for r in conn.execute(select(findings).where(findings.c.status.in_(ACTIVE))).mappings()]
            for row in rows:
                if matcher.reason_for(row["ip"]) is None:
                    continue
                state, events = opt_out(finding_state(row), at)
                if not events:
                    continue
                conn.execute(update(findings).where(findings.c.id == row["id"])
                             .values(status=state.status, fixed_at=state.fixed_at, missed_since=state.missed_since))
                conn.execute(insert(finding_events), [
                    {"finding_id": row["id"], "scan_id": None, "at": e.at, "kind": e.kind,
                     "old_severity": e.old_severity, "new_severity": e.new_severity, "observation_id": None}
                    for e in events])
                closed.append({k: row[k] for k in ("id", "ip", "port", "severity")})
        return closed

    def add_scope(self, cidr: str, note: str | None = None) -> int:
        with self._write() as conn:
            return conn.execute(insert(scope_entries).returning(scope_entries.c.id), {
                "cidr": cidr, "note": note, "added_at": now_utc(), "added_by": operator()}).scalar_one()

    def scope_entries(self) -> list[Row]:
        return self._all(select(scope_entries).order_by(scope_entries.c.id))

    def remove_scope(self, entry_id: int) -> bool:
        with self._write() as conn:
            return conn.execute(delete(scope_entries).where(scope_entries.c.id == entry_id)).rowcount > 0
