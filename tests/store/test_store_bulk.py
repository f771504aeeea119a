"""The ingest path (store/bulk.py: Core's statements, executemany without Core's work per row)
stores exactly what plain Core stores: every table, byte for byte, on SQLite and PostgreSQL.

`core_ingest` below is the ingest as it was written with `conn.execute(insert(table), rows)`,
per-batch statements and Core's parameter processing: the reference. Both run the same batches
(new endpoints, rescans that fix, change and reopen findings, stale looks from a resumed scan,
keep-all, blocked, repeated endpoints, more addresses than one IN list held) on two fresh
databases, and every table is compared as the database holds it (raw driver values on SQLite,
each row's text on PostgreSQL).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, delete, func, insert, select, update

from pacswatch.findings.ingest import plan_batch
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import AssociationFacts, DicomFacts, Find, HttpFacts, Product, Record
from pacswatch.store import Repository, StoreError, repository
from pacswatch.store.bulk import BulkStatement
from pacswatch.store.schema import metadata
from pacswatch.store.tables import (
    RawJson,
    finding_events,
    findings,
    observations,
    scan_work,
    scans,
    services,
)
from pacswatch.store.throwaway import database_url as fresh_database

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CLOCK = datetime(2024, 6, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
SEVERITIES = ("critical", "high", "medium", "low")


# --- the reference: ingest through plain Core -------------------------------------------------


def core_ingest(repo: Repository, scan_id: int, items, *, work=None, policy=None, keep_all=False) -> None:
    policy = policy or RescanPolicy()
    keys = {(r.ip, r.port) for _, r in items}

    def clean(row):
        return {k: v for k, v in row.items() if not k.startswith("_") and k != "id"}

    def by_key(conn, table):
        out = {}
        ips = sorted({ip for ip, _ in keys})
        for start in range(0, len(ips), 500):
            for row in conn.execute(select(table).where(table.c.ip.in_(ips[start:start + 500]))).mappings():
                if (row["ip"], row["port"]) in keys:
                    out[(row["ip"], row["port"])] = repository._row(row)
        return out

    def allocate(conn, table, count):
        if count == 0:
            return []
        if repo.backend == "postgresql":
            return list(conn.execute(select(func.nextval(func.pg_get_serial_sequence(table.name, "id")))
                                     .select_from(func.generate_series(1, count))).scalars())
        top = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
        return list(range(top + 1, top + 1 + count))

    with repo._write() as conn:
        if repo.backend == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        known_services, known_findings = (by_key(conn, services), by_key(conn, findings)) if keys else ({}, {})
        plan = plan_batch(items, known_services, known_findings, scan_id=scan_id, policy=policy, keep_all=keep_all)
        obs_ids = allocate(conn, observations, len(plan.observations))
        if plan.observations:
            conn.execute(insert(observations), [{**r, "id": i, "record": RawJson(r["record"])}
                                                for r, i in zip(plan.observations, obs_ids)])

        def obs_id(row):
            return obs_ids[row["_obs"]] if row.get("_obs") is not None else row.get("last_observation_id")

        if plan.services_new:
            conn.execute(insert(services), [{**clean(r), "last_observation_id": obs_id(r)} for r in plan.services_new])
        if plan.services_changed:
            conn.execute(update(services).where(services.c.id == bindparam("b_id")),
                         [{**clean(r), "last_observation_id": obs_id(r), "b_id": r["id"]}
                          for r in plan.services_changed])
        finding_ids = {k: r["id"] for k, r in known_findings.items()}
        if plan.findings_new:
            new_ids = allocate(conn, findings, len(plan.findings_new))
            conn.execute(insert(findings), [{**clean(r), "id": i, "last_observation_id": obs_id(r)}
                                            for r, i in zip(plan.findings_new, new_ids)])
            finding_ids.update(zip((r["_key"] for r in plan.findings_new), new_ids))
        if plan.findings_changed:
            conn.execute(update(findings).where(findings.c.id == bindparam("b_id")),
                         [{**clean(r), "last_observation_id": obs_id(r), "b_id": r["id"]}
                          for r in plan.findings_changed])
        if plan.events:
            conn.execute(insert(finding_events), [
                {**clean(e), "finding_id": finding_ids[e["_key"]], "observation_id": obs_ids[e["_obs"]]}
                for e in plan.events])
        counts = conn.execute(select(scans.c.counts).where(scans.c.id == scan_id)).scalar_one() or {}
        for status, n in plan.counts.items():
            counts[status] = counts.get(status, 0) + n
        values: dict[str, Any] = {"counts": counts, "updated_at": repository.now_utc()}
        if work is not None:
            values["done"] = len(work)
            conn.execute(delete(scan_work).where(scan_work.c.scan_id == scan_id))
            if intervals := work.intervals():
                conn.execute(insert(scan_work), [{"scan_id": scan_id, "first_index": a, "last_index": b}
                                                 for a, b in intervals])
        conn.execute(update(scans).where(scans.c.id == scan_id).values(**values))


# --- records ----------------------------------------------------------------------------------


def dicom(ip, port, severity, at, studies=12, patients=5, product=("Orthanc", "1.12"), reasons=("C-FIND open",)):
    facts = DicomFacts(association=AssociationFacts(accepted=True, called_ae="ANY-SCP",
                                               accepted_contexts=["Verification", "StudyRootQueryRetrieveFind"]),
                       echo=True, find=Find(allowed=True, studies=studies, patients=patients))
    return Record(ip=ip, port=port, status="success", service="dicom", severity=severity, dicom=facts,
                  product=product and Product(name=product[0], version=product[1]), reasons=list(reasons),
                  scanned_at=at, elapsed_ms=40)


def web(ip, port, severity, at, product=("Orthanc Explorer", None)):
    http = HttpFacts(url=f"http://{ip}:{port}/", status_code=200, auth="open", studies=3, patients=None,
                     title="Orthanc – Explorer ü")
    return Record(ip=ip, port=port, transport="tls" if port == 443 else "tcp", status="success", service="http",
                  severity=severity, http=http, product=product and Product(name=product[0], version=product[1]),
                  reasons=["web API answers without login"] if severity else [], scanned_at=at)


def silent(ip, port, at, status="connection-refused"):
    return Record(ip=ip, port=port, status=status, scanned_at=at, detail="errno 111" if status == "error" else None)


def scripted_batches() -> list[tuple[int, list, bool]]:
    """(scan, [(index, record)], keep_all) in order: each lifecycle step at least once."""
    t1, t2, t3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)
    long_name = ("Vendor " * 40, "9." * 50)  # truncated to the columns' lengths
    first = [dicom("127.1.0.1", 104, "critical", T0), dicom("127.1.0.1", 11112, "high", T0, product=None),
             web("127.1.0.2", 8042, "high", T0), web("127.1.0.2", 443, None, T0),
             dicom("127.1.0.3", 104, "low", T0, product=long_name, reasons=()),
             silent("127.1.0.4", 104, T0), silent("127.1.0.5", 104, T0, "connection-timeout"),
             silent("127.1.0.6", 104, T0, "blocked"), silent("127.1.0.7", 104, T0, "io-timeout"),
             dicom("127.1.0.8", 104, "medium", T0.astimezone(timezone(timedelta(hours=2)))),
             dicom("127.1.0.9", 104, "high", T0), silent("127.1.0.9", 104, T0 + timedelta(hours=1))]
    second = [dicom("127.1.0.1", 104, "high", t1), silent("127.1.0.1", 11112, t1),
              silent("127.1.0.2", 8042, t1, "io-timeout"), silent("127.1.0.2", 443, t1),
              silent("127.1.0.3", 104, t1, "blocked"), dicom("127.1.0.4", 104, "critical", t1),
              silent("127.1.0.8", 104, t1, "error"), dicom("127.1.0.10", 104, "low", t1)]
    third = [dicom("127.1.0.1", 11112, "medium", t2), dicom("127.1.0.9", 104, "critical", t2),
             web("127.1.0.2", 443, "low", t2), silent("127.1.0.4", 104, t2)]
    stale = [silent("127.1.0.1", 104, T0 + timedelta(hours=1)), dicom("127.1.0.4", 104, "low", T0)]
    wide = [(dicom if n % 7 == 0 else silent)(f"127.2.{n // 250}.{n % 250 + 1}", 104 + n % 3,
                                              *(("high", t3) if n % 7 == 0 else (t3,)))
            for n in range(1200)]
    dead = [silent(f"127.3.0.{n}", 104, t3) for n in range(1, 40)]
    return [(1, list(enumerate(first)), False), (1, [], False), (2, list(enumerate(second)), False),
            (3, [(None, r) for r in third], False), (1, [(20 + i, r) for i, r in enumerate(stale)], False),
            (4, list(enumerate(wide)), False), (4, [(2000 + i, r) for i, r in enumerate(dead)], True),
            (5, list(enumerate(wide[::5])), False),
            # A finding is fixed by a second miss (two-miss rule), then reopened; another fixed for good.
            (6, list(enumerate([silent("127.1.0.4", 104, t3), silent("127.1.0.10", 104, t3)])), False),
            (7, list(enumerate([dicom("127.1.0.4", 104, "high", t3 + timedelta(hours=1)),
                                silent("127.1.0.10", 104, t3 + timedelta(hours=7))])), False)]


def random_batches(seed: int) -> list[tuple[int, list, bool]]:
    """Looks at a few endpoints, in random order, statuses and times, over several scans."""
    rnd = random.Random(seed)
    endpoints = [(f"127.4.{rnd.randrange(3)}.{rnd.randrange(1, 20)}", rnd.choice((104, 4242, 8042)))
                 for _ in range(60)]
    out = []
    for scan in range(1, 6):
        items = []
        for index in range(rnd.randrange(0, 120)):
            ip, port = rnd.choice(endpoints)
            at = T0 + timedelta(hours=scan * 24 + rnd.uniform(-30, 30), microseconds=rnd.randrange(10**6))
            kind = rnd.random()
            if kind < 0.35:
                record = dicom(ip, port, rnd.choice(SEVERITIES), at, studies=rnd.randrange(100),
                               patients=rnd.choice((None, 3)), reasons=rnd.sample(["a", "b", "c"], rnd.randrange(4)))
            elif kind < 0.45:
                record = web(ip, port, rnd.choice((None, *SEVERITIES)), at)
            else:
                record = silent(ip, port, at, rnd.choice(("connection-refused", "connection-timeout", "io-timeout",
                                                          "blocked", "error", "rejected", "protocol-error")))
            items.append((rnd.choice((index, None)), record))
        for start in range(0, len(items), 40):
            out.append((scan, items[start:start + 40], rnd.random() < 0.2))
    return out


# --- running both and comparing -----------------------------------------------------------------


def store(url: str, batches, ingest) -> dict[str, list]:
    with Repository.open(url) as repo:
        for n in range(1, 1 + max(scan for scan, _, _ in batches)):
            assert repo.create_scan(kind="scan", parameters={"n": n}, seed=n, fingerprint="f", targets_key="k",
                                    plan_size=5000) == n
        work: dict[int, IntervalSet] = {}
        for scan, items, keep_all in batches:
            done = work.setdefault(scan, IntervalSet())
            for index, _ in items:
                if index is not None:
                    done.add(index)
            ingest(repo, scan, items, work=done, policy=RescanPolicy(), keep_all=keep_all)
        return dump(repo)


def dump(repo: Repository) -> dict[str, list]:
    """Every table as the database holds it, rows in a fixed order."""
    out = {}
    with repo.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if repo.backend == "postgresql":  # each row's text: exact timestamps and JSON text
                rows = [r[0] for r in conn.exec_driver_sql(f"SELECT t::text FROM {table.name} AS t")]
            else:  # raw values: datetimes and JSON as the strings stored, ints as ints
                rows = [repr(tuple(r)) for r in conn.exec_driver_sql(f"SELECT * FROM {table.name}")]
            out[table.name] = sorted(rows)
    return out


@pytest.fixture
def two_databases(request, tmp_path):
    backend = request.param
    urls = []
    for name in ("core", "bulk"):
        (tmp_path / name).mkdir()
        urls.append(fresh_database(backend, tmp_path / name, request.config))
    return urls


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(repository, "now_utc", lambda: CLOCK)


def bulk_ingest(repo, scan, items, **options):
    repo.ingest(scan, items, **options)


@pytest.mark.parametrize("two_databases", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("batches", ["scripted", 1, 2, 3], ids=lambda b: f"batches-{b}")
def test_bulk_ingest_stores_what_core_stores(two_databases, batches):
    batches = scripted_batches() if batches == "scripted" else random_batches(batches)
    core_url, bulk_url = two_databases
    expected = store(core_url, batches, core_ingest)
    got = store(bulk_url, batches, bulk_ingest)
    assert sum(map(len, expected.values())) > len(expected["scans"])  # it stored something
    for table in expected:
        assert got[table] == expected[table], table


def test_the_scripted_batches_reach_every_kind_of_write(tmp_path, request):
    # The comparison above means something only if the input makes every kind of row.
    url = fresh_database("sqlite", tmp_path, request.config)
    store(url, scripted_batches(), bulk_ingest)
    with Repository.open(url) as repo:
        assert {e["kind"] for e in repo.events()} == {"new", "severity", "missed", "seen-again", "fixed",
                                                      "reopened"}
        assert {f["status"] for f in repo.findings()} == {"open", "fixed", "reopened"}
        assert len(repo.services()) > 150
        assert {o["status"] for o in repo.observations(scan_id=4)} == {"success", "connection-refused"}  # keep-all
        # the resumed scan's stale look is kept as an observation, and changes nothing
        assert [o["scanned_at"] for o in repo.observations(scan_id=1, ip="127.1.0.1", port=104)] == \
            [T0, T0 + timedelta(hours=1)]
        (service,) = [s for s in repo.services() if (s["ip"], s["port"]) == ("127.1.0.1", 104)]
        assert service["last_checked"] == T0 + timedelta(days=1) and service["status"] == "success"


def test_rows_are_found_by_the_whole_key(repo):
    # A multi-port scan: the rows of an address's other ports are not read.
    scan = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f", targets_key="k", plan_size=3)
    repo.ingest(scan, [(0, dicom("127.5.0.1", 104, "high", T0)), (1, dicom("127.5.0.1", 4242, "low", T0)),
                       (2, dicom("127.5.0.2", 104, "low", T0))])
    with repo._write() as conn:
        found = repo._by_key(conn, services, {("127.5.0.1", 104), ("127.5.0.2", 4242), ("127.5.0.9", 104)})
        assert list(found) == [("127.5.0.1", 104)] and found[("127.5.0.1", 104)]["severity"] == "high"
        assert list(repo._by_key(conn, findings, {("127.5.0.2", 104)})) == [("127.5.0.2", 104)]


def test_a_row_without_a_column_is_refused_not_stored_as_null(tmp_path, request):
    url = fresh_database("sqlite", tmp_path, request.config)
    with Repository.open(url) as repo:
        statement = BulkStatement("insert", services, repo.engine.dialect)
        row = {"ip": "127.0.0.1", "port": 104, "transport": "tcp", "status": "success", "first_seen": T0,
               "last_seen": T0, "last_checked": T0, "next_due": T0}  # no product, severity, counts, ...
        with pytest.raises(KeyError):
            statement.parameters([row], {})


def test_a_value_core_would_fill_in_is_refused(tmp_path, request):
    # An id with a Python-side default: Core would compute it per row; a bulk statement that
    # leaves the database to number the rows must say at once that it cannot, not store NULL.
    from sqlalchemy import Column, Integer, MetaData, Table

    table = Table("t", MetaData(), Column("id", Integer, primary_key=True, default=lambda: 7), Column("a", Integer))
    url = fresh_database("sqlite", tmp_path, request.config)
    with Repository.open(url) as repo:
        with pytest.raises(StoreError, match="not the columns"):
            BulkStatement("insert", table, repo.engine.dialect)
        assert BulkStatement("insert-id", table, repo.engine.dialect).names == ("id", "a")


def test_equal_moments_in_other_zones_are_not_mixed_up(tmp_path, request):
    # SQLite stores the wall-clock time: the memo must not hand one zone's string to another.
    url = fresh_database("sqlite", tmp_path, request.config)
    with Repository.open(url) as repo:
        statement = BulkStatement("insert", finding_events, repo.engine.dialect)
        plus2 = T0.astimezone(timezone(timedelta(hours=2)))
        rows = [{"finding_id": 1, "scan_id": 1, "at": at, "kind": "new", "old_severity": None, "new_severity": "low",
                 "observation_id": 1, "marked_by": None, "reason": None} for at in (T0, plus2, T0.replace(tzinfo=None))]
        at = statement.names.index("at")
        assert [p[at] for p in statement.parameters(rows, {})] == \
            ["2024-05-01 12:00:00.000000", "2024-05-01 14:00:00.000000", "2024-05-01 12:00:00.000000"]


def test_a_batch_is_stepped_a_few_times_on_sqlite_not_once_per_row(tmp_path, request):
    """The sqlite3 module lets go of the GIL for every row it steps (the event loop then takes
    it): a batch's inserts go in statements of many rows, the done intervals it merges away in
    one DELETE. Counted here as the statements the driver runs, each row of an executemany one."""
    from sqlalchemy import event

    url = fresh_database("sqlite", tmp_path, request.config)
    with Repository.open(url) as repo:
        steps: list[int] = []

        @event.listens_for(repo.engine, "before_cursor_execute")
        def count(conn, cursor, statement, parameters, context, executemany):
            steps.append(len(parameters) if executemany else 1)

        scan = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f", targets_key="k", plan_size=200)
        work = IntervalSet()
        for indexes in (range(0, 200, 2), range(1, 200, 2)):  # 100 intervals, then merged into one
            items = [(i, dicom(f"127.9.{i // 250}.{i % 250 + 1}", 104, "high", T0)) for i in indexes]
            for i, _ in items:
                work.add(i)
            steps.clear()
            repo.ingest(scan, items, work=work)
            # 100 records: an observation, a service, a finding and an event each, in 32 + 32 +
            # 32 + 4 rows a table; 100 intervals inserted, or 99 deleted and one inserted.
            assert sum(steps) < 40, steps
        assert repo.completed(scan).intervals() == [(0, 199)]
        assert len(repo.observations(scan_id=scan)) == 200 and len(repo.findings()) == 200
