"""How fast the store takes observations, and how much room they take, on SQLite and PostgreSQL.

    python bench/db_bench.py [--records 100000] [--batch 256] [--backends sqlite,postgresql]
    python bench/db_bench.py --scan bench/results/internet_mix-*/pacswatch-uvloop-c8000 --by-statement

Writes go through the real path (Repository.ingest, the batches StoreSink commits during a scan),
with records made in memory beforehand so only the database work is timed. Four passes over
`--records` endpoints each (all on 127.0.0.0/8: addresses here are data, nothing is sent):

  new        every record a new exposed service: observation, service, finding, event
  rescan     the same endpoints again, one in ten changed (fixed or another severity): updates
  keep-all   addresses where nothing answered, stored with --keep-all: observations only
  mixed      a scan of new addresses as most scans go: one in five an exposed DICOM service, the
             rest refused or silent (counted, not stored)

Besides records/s, each pass reports this process's CPU per record (user + system: what the
store takes from the scanner it shares the GIL with; a PostgreSQL server's CPU is not in it).

`--scan RUN` adds a fifth pass, `scan`: a real scan's records (RUN.jsonl, the output of a
benchmark's pacswatch run) replayed in the order they came, each with its plan index (rebuilt from
the scan's parameters in RUN.db), so the completed-work intervals fragment as they did in the
scan. `--by-statement` splits each pass's CPU by SQL statement (its executemany or execute, the
driver's work included), the commits, and the rest (Python: planning, building rows, SQLAlchemy).

The garbage collector is set as a scan sets it (scan/job.py, run_event_loop: what exists is
frozen, the young generation collected every 100,000 allocations), after the records are made:
with Python's defaults, one full collection of this process's 240,000 objects (mostly the
records replayed) fell in a pass or not by chance, 15 µs per record of a 10,000-record pass.

Size is the database's growth per 100,000 observations (SQLite: the file after a checkpoint;
PostgreSQL: pg_database_size). PostgreSQL runs a throwaway server on loopback with its default,
durable settings (fsync on); SQLite runs in WAL mode with synchronous=NORMAL, pacswatch's
settings. Results go to stdout and bench/results/db_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pacswatch.campaign.scanrun import SCAN_BATCH
from pacswatch.findings.work import IntervalSet
from pacswatch.record import AssociationFacts, DicomFacts, Find, Product, Record
from pacswatch.scan.eventloop import prepare_collector
from pacswatch.store import Repository

SEVERITIES = ("critical", "high", "medium", "low")


def endpoint(n: int) -> tuple[str, int]:
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}", 104 + (n >> 24)


def exposed(n: int, at: datetime, severity: str) -> Record:
    ip, port = endpoint(n)
    find = Find(allowed=True, studies=n % 5000, patients=n % 700)
    facts = DicomFacts(association=AssociationFacts(accepted=True, called_ae="ANY-SCP", calling_ae="PACSWATCH",
                                               implementation_class_uid="1.2.826.0.1.3680043.8.1055.1",
                                               implementation_version_name="PYNETDICOM_200",
                                               accepted_contexts=["Verification", "StudyRootQueryRetrieveFind"]),
                       accepts_any_called_ae=True, echo=True, find=find, store_accepted=n % 2 == 0)
    return Record(ip=ip, port=port, status="success", service="dicom", product=Product(name="Orthanc", version="1.12"),
                  dicom=facts, severity=severity, reasons=["accepts any calling AE", "C-FIND answers"],
                  scanned_at=at, elapsed_ms=40, scanner="pacswatch/bench")


def dead(n: int, at: datetime) -> Record:
    ip, port = endpoint(n + (1 << 22))
    return Record(ip=ip, port=port, status="connection-refused", scanned_at=at, scanner="pacswatch/bench")


def mixed(n: int, at: datetime) -> Record:
    if n % 5 == 0:
        return exposed(n + (2 << 22), at, SEVERITIES[n % 4])
    ip, port = endpoint(n + (2 << 22))
    status = "connection-refused" if n % 5 in (1, 2) else "connection-timeout"
    return Record(ip=ip, port=port, status=status, scanned_at=at, elapsed_ms=4000, scanner="pacswatch/bench")


def passes(count: int) -> dict[str, list[Record]]:
    t0 = datetime.now(timezone.utc)
    t1 = t0 + timedelta(days=1)
    rescan = []
    for n in range(count):
        if n % 10 == 0:
            ip, port = endpoint(n)
            rescan.append(Record(ip=ip, port=port, status="connection-refused", scanned_at=t1))
        elif n % 10 == 1:
            rescan.append(exposed(n, t1, "low"))
        else:
            rescan.append(exposed(n, t1, SEVERITIES[n % 4]))
    return {"new": [exposed(n, t0, SEVERITIES[n % 4]) for n in range(count)], "rescan": rescan,
            "keep-all": [dead(n, t0) for n in range(count)],
            "mixed": [mixed(n, t0 + timedelta(microseconds=n)) for n in range(count)]}


def scan_records(run: Path) -> list[tuple[int, Record]]:
    """A benchmark run's records (RUN.jsonl) in output order, each with its plan index, rebuilt
    from the scan's stored parameters (RUN.db) as `scan --resume` rebuilds it."""
    import sqlite3

    from pacswatch.campaign.scanrun import plan_from_parameters
    from pacswatch.targets import Blocklist

    db = sqlite3.connect(f"file:{run.with_suffix('.db')}?mode=ro", uri=True)
    try:
        parameters = json.loads(db.execute("SELECT parameters FROM scans ORDER BY id LIMIT 1").fetchone()[0])
    finally:
        db.close()
    plan = plan_from_parameters(parameters, Blocklist([]), None)
    index = {(e.ip, e.port): e.index for e in plan}
    records = [Record.model_validate_json(line) for line in run.with_suffix(".jsonl").read_text().splitlines()]
    return [(index[(r.ip, r.port)], r) for r in records]


class StatementClock:
    """This thread's CPU by SQL statement (the driver's execute or executemany), by commit, and
    the rest, on one engine: where the store's CPU goes (--by-statement)."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.by: dict[str, float] = {}
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        dialect = engine.dialect
        commit = dialect.do_commit

        def timed_commit(dbapi_connection) -> None:
            started = time.thread_time()
            commit(dbapi_connection)
            self._add("COMMIT", time.thread_time() - started)

        dialect.do_commit = timed_commit

    def _add(self, key: str, seconds: float) -> None:
        self.by[key] = self.by.get(key, 0.0) + seconds

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self._started = time.thread_time()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        words = statement.split()
        table = next((w for w in words[1:5] if w.upper() not in ("INTO", "FROM", "OR", "IGNORE")), "")
        table = table.strip('"')
        key = f"{words[0].upper()} {table}{' (many)' if executemany else ''}"
        self._add(key, time.thread_time() - self._started)

    def take(self) -> dict[str, float]:
        by, self.by = self.by, {}
        return by


def size_of(repo: Repository, path: Path | None) -> int:
    with repo.engine.connect() as conn:
        if path is not None:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return path.stat().st_size
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())


def run_backend(name: str, url: str, path: Path | None, data: dict[str, list], batch: int,
                by_statement: bool = False) -> dict:
    results = {}
    with Repository.open(url) as repo:
        clock = StatementClock(repo.engine) if by_statement else None
        for pass_name, records in data.items():
            indexed = pass_name == "scan"  # (plan index, record) in the scan's order
            scan = repo.create_scan(kind="scan", parameters={}, seed=0, fingerprint="bench", targets_key=pass_name,
                                    plan_size=len(records))
            before = size_of(repo, path)
            work = IntervalSet()
            if clock is not None:
                clock.take()
            started, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(records), batch):
                if indexed:
                    items = records[start:start + batch]
                else:
                    items = [(i, records[i]) for i in range(start, min(start + batch, len(records)))]
                for i, _ in items:
                    work.add(i)
                repo.ingest(scan, items, work=work, keep_all=pass_name == "keep-all")
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            grown = size_of(repo, path) - before
            results[pass_name] = {"records": len(records), "seconds": round(elapsed, 3),
                                  "per_second": round(len(records) / elapsed),
                                  "cpu_us_per_record": round(cpu * 1e6 / len(records), 1),
                                  "bytes_per_100k": round(grown * 100_000 / len(records))}
            print(f"  {name:<10} {pass_name:<9} {len(records) / elapsed:>9,.0f} records/s   "
                  f"{cpu * 1e6 / len(records):>6.1f} µs CPU/record   "
                  f"{grown * 100_000 / len(records) / 2**20:>7.1f} MiB per 100,000", flush=True)
            if clock is not None:
                split = clock.take()
                split["the rest (Python)"] = cpu - sum(split.values())
                results[pass_name]["cpu_us_per_record_by_statement"] = {
                    k: round(v * 1e6 / len(records), 1) for k, v in split.items()}
                for key, seconds in sorted(split.items(), key=lambda kv: -kv[1]):
                    print(f"      {seconds * 1e6 / len(records):>6.1f} µs  {key}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=SCAN_BATCH, help="records per transaction (a local scan's)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    parser.add_argument("--scan", type=Path, help="also replay a benchmark run's records: RUN.jsonl and RUN.db "
                        "(e.g. bench/results/internet_mix-*/pacswatch-uvloop-c8000)")
    parser.add_argument("--passes", default="new,rescan,keep-all,mixed,scan", help="which passes to run")
    parser.add_argument("--by-statement", action="store_true", help="split each pass's CPU by SQL statement")
    args = parser.parse_args(argv)
    print(f"making {4 * args.records:,} records in memory...", flush=True)
    data: dict[str, list] = dict(passes(args.records))
    if args.scan is not None:
        data["scan"] = scan_records(args.scan)
    data = {name: records for name, records in data.items() if name in args.passes.split(",")}
    out: dict = {"records": args.records, "batch": args.batch, "python": sys.version.split()[0], "backends": {}}
    prepare_collector()  # as a scan does, so the store meets the collector it meets there
    with tempfile.TemporaryDirectory(prefix="pacswatch-dbbench-") as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                path = Path(tmp) / "bench.db"
                out["backends"]["sqlite"] = run_backend("sqlite", f"sqlite:///{path}", path, data, args.batch,
                                                        args.by_statement)
            elif backend == "postgresql":
                from pacswatch.store.throwaway import ThrowawayPostgres

                with ThrowawayPostgres(durable=True) as pg:
                    out["backends"]["postgresql"] = run_backend("postgresql", pg.create_database("bench"), None,
                                                                data, args.batch, args.by_statement)
            else:
                parser.error(f"unknown backend {backend}")
    if {"sqlite", "postgresql"} <= out["backends"].keys():
        for pass_name in data:
            s, p = out["backends"]["sqlite"][pass_name], out["backends"]["postgresql"][pass_name]
            print(f"  ratio postgresql/sqlite {pass_name:<9} speed {p['per_second'] / s['per_second']:.2f}x   "
                  f"size {p['bytes_per_100k'] / max(1, s['bytes_per_100k']):.2f}x")
    if not args.no_save:
        results = Path(__file__).with_name("results")
        results.mkdir(exist_ok=True)
        target = results / f"db_bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        target.write_text(json.dumps(out, indent=2) + "\n")
        print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
