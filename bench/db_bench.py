"""How fast the store takes observations, and how much room they take, on SQLite and PostgreSQL.

    python bench/db_bench.py [--records 100000] [--batch 256] [--backends sqlite,postgresql]

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

from pacswatch.findings.work import IntervalSet
from pacswatch.record import AssociationFacts, DicomFacts, Find, Product, Record
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


def size_of(repo: Repository, path: Path | None) -> int:
    with repo.engine.connect() as conn:
        if path is not None:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return path.stat().st_size
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())


def run_backend(name: str, url: str, path: Path | None, data: dict[str, list[Record]], batch: int) -> dict:
    results = {}
    with Repository.open(url) as repo:
        for pass_name, records in data.items():
            scan = repo.create_scan(kind="scan", parameters={}, seed=0, fingerprint="bench", targets_key=pass_name,
                                    plan_size=len(records))
            before = size_of(repo, path)
            work = IntervalSet()
            started, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(records), batch):
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
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256, help="records per transaction (StoreSink's default)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    print(f"making {4 * args.records:,} records in memory...", flush=True)
    data = passes(args.records)
    out: dict = {"records": args.records, "batch": args.batch, "python": sys.version.split()[0], "backends": {}}
    with tempfile.TemporaryDirectory(prefix="pacswatch-dbbench-") as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                path = Path(tmp) / "bench.db"
                out["backends"]["sqlite"] = run_backend("sqlite", f"sqlite:///{path}", path, data, args.batch)
            elif backend == "postgresql":
                from pacswatch.store.throwaway import ThrowawayPostgres

                with ThrowawayPostgres(durable=True) as pg:
                    out["backends"]["postgresql"] = run_backend("postgresql", pg.create_database("bench"), None,
                                                                data, args.batch)
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
