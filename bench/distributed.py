#!/usr/bin/env python3
"""Distributed scans: how endpoints/s grow with worker processes, and PostgreSQL's bulk ingest.

    python bench/distributed.py [--endpoints 12000] [--per-worker 64] [--workers 1,2,4] [--delay-ms 200]

Everything on loopback: a throwaway PostgreSQL (store/throwaway.py) and redis-server
(distributed/throwaway.py), bench/responder.c serving --endpoints DICOM endpoints (127.67.128.1 on,
port 11112) that accept every association and hold each reply back --delay-ms (a distant
network), and `pacswatch worker` processes with Celery concurrency 1 (one shard at a time, one
core each) and a fixed asyncio concurrency per worker (--per-worker: the scan's --concurrency is
per-worker x workers, shared out among the live workers, and its rate is set far above what
the network allows, so the delay is the limit). For each worker count, a fresh database and
`pacswatch scan --broker` over every endpoint:

- endpoints/s: over the scan command's wall time (its start-up, planning, sending the shards, the
  last shard's tail, the 0.5 s poll), and steady, between 10% and 90% of endpoints stored,
- CPU s per 1,000 endpoints of the worker process trees (Celery parents and pool processes),
- the scaling ratio against one worker (goal: 4 workers >= 3.5x one while the network is the limit),
- how busy the machine's CPUs were during the run (every process on it, other work included) and
  how many cores the workers used: the network is the limit only while the CPUs have time to
  spare. The defaults (200 ms per reply, 64 endpoints in flight per worker) keep four workers,
  the responder and PostgreSQL well under two cores; at 50 ms four workers needed more CPU than
  a shared 2-core machine had, and the ratio measured the machine, not the scans.

Then the ingest rate: --ingest-records records stored through a shard's path (the workers':
Repository.ingest, skipping what is stored under the shard's lock) in batches of 1,000, by one
and by two processes at once, for two mixes: observations only (refused endpoints kept with
--keep-all) and new exposures (observation, service, finding and event each): observations/s.
Results: printed, and bench/results/distributed-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from c_responder import CResponder  # noqa: E402 (beside this file)

from pacswatch.distributed.throwaway import ThrowawayRedis  # noqa: E402
from pacswatch.lab.fast import loopback_addresses, raise_nofile_limit  # noqa: E402
from pacswatch.store.throwaway import ThrowawayPostgres  # noqa: E402

RESULTS = HERE / "results"
BASE = "127.67.128.1"  # this engineer's loopback range
PORT = 11112


def tree_cpu(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes and their children, alive now."""
    total = 0.0
    for process in processes:
        for p in [process, *process.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def machine_busy(before, after) -> float:
    """The share of every core's time spent running something (any process on the machine)
    between two psutil.cpu_times() readings: 1.0 means the CPUs were the limit."""
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    return (total - idle) / total if total > 0 else 0.0


def wait_live(database: str, count: int, timeout: float = 60) -> None:
    from pacswatch.store.repository import Repository
    from pacswatch.store.shards import ShardStore

    deadline = time.monotonic() + timeout
    with Repository.open(database) as repo:
        while len(ShardStore(repo.engine).workers(live_only=True)) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} workers did not come up")
            time.sleep(0.2)
    time.sleep(1.0)


def one_run(pg: ThrowawayPostgres, redis: ThrowawayRedis, targets_file: Path, endpoints: int, workers: int,
            per_worker: int, logs: Path) -> dict:
    database = pg.create_database(f"bench_w{workers}_{int(time.time())}")
    from pacswatch.store.repository import Repository

    Repository.open(database).close()  # the schema, before the workers race to create it
    env = {**os.environ, "PACSWATCH_DATABASE_URL": database}
    procs = []
    for n in range(workers):
        log = open(logs / f"w{workers}-{n}.log", "wb")  # noqa: SIM115 - closed below
        procs.append(subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "worker", "--broker", redis.url,
                                       "--database", database, "--concurrency", "1", "--name", f"bench{n}@w{workers}"],
                                      stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        log.close()
    try:
        wait_live(database, workers)
        watched = [psutil.Process(p.pid) for p in procs]
        cpu_before = tree_cpu(watched)
        machine_before = psutil.cpu_times()
        shard_size = max(50, endpoints // (workers * 8))  # enough shards to keep every worker busy to the end
        started = time.monotonic()
        scan = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "scan", f"@{targets_file}", "--database",
                                 database, "--broker", redis.url, "--rate", "1000000", "--concurrency",
                                 str(per_worker * workers), "--shard-size", str(shard_size), "--no-progress", "-q",
                                 "--no-attribute", "--timeout", "5"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        samples = []  # (seconds, endpoints stored): the steady rate, without start-up and tail
        with Repository.open(database) as repo:
            while scan.poll() is None:
                rows = repo.scans(limit=1)
                samples.append((time.monotonic() - started, rows[0]["done"] if rows else 0))
                time.sleep(0.25)
        wall = time.monotonic() - started
        cpu = tree_cpu(watched) - cpu_before
        busy = machine_busy(machine_before, psutil.cpu_times())
        load = os.getloadavg()[0]
        if scan.returncode != 0:
            raise SystemExit(f"scan failed ({scan.returncode}): {scan.stderr.read()[-2000:] if scan.stderr else ''}")
        low = next(t for t, done in samples if done >= 0.1 * endpoints)
        high = next((t, done) for t, done in samples if done >= 0.9 * endpoints)
        first = next(done for t, done in samples if t == low)
        steady = (high[1] - first) / (high[0] - low) if high[0] > low else None
        with Repository.open(database) as repo:
            row = repo.scans(limit=1)[0]
        return {"workers": workers, "endpoints": endpoints, "done": row["done"], "counts": row["counts"],
                "wall_s": round(wall, 2), "endpoints_per_s": round(endpoints / wall, 1),
                "steady_endpoints_per_s": round(steady, 1) if steady else None,
                "worker_cpu_s": round(cpu, 2), "cpu_s_per_1000": round(1000 * cpu / endpoints, 3),
                "worker_cores": round(cpu / wall, 2), "machine_busy_pct": round(100 * busy, 1),
                "load_avg_1m_after": round(load, 2), "shard_size": shard_size}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _records(records: int, mix: str, offset: int = 0) -> list:
    """`exposures`: each record a new exposed service (observation, service, finding, event);
    `observations`: each a refused endpoint kept as an observation only (--keep-all)."""
    from pacswatch.record import AssociationFacts, DicomFacts, Find, Product, Record

    at = datetime(2026, 1, 1, tzinfo=UTC)
    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=3, patients=2))
    out = []
    for i in range(offset, offset + records):
        ip, port = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 11112  # stored only, never contacted
        if mix == "exposures":
            record = Record(ip=ip, port=port, status="success", service="dicom", severity="high", dicom=facts,
                            product=Product(name="Orthanc", version="1.12"), reasons=["C-FIND open"],
                            scanned_at=at + timedelta(microseconds=i))
        else:
            record = Record(ip=ip, port=port, status="connection-refused", scanned_at=at + timedelta(microseconds=i))
        out.append((i, record))
    return out


def _ingest_part(url: str, scan: int, shards: list[tuple[int, int, int]], mix: str, start, queue) -> None:
    """One ingesting process (a worker's store): its shards, in batches of the shard's size."""
    from pacswatch.store.repository import Repository, ShardSpan

    with Repository.open(url) as repo:
        batches = [(ShardSpan(i, a, b), _records(b - a + 1, mix, a)) for i, a, b in shards]
        start.wait()  # all writers start together, with the clock
        started = time.perf_counter()
        for span, items in batches:
            repo.ingest(scan, items, shard=span, vantage="bench", keep_all=mix == "observations")
        queue.put(time.perf_counter() - started)


def ingest_rate(pg: ThrowawayPostgres, records: int, batch: int = 1000) -> list[dict]:
    """Observations/s stored in bulk through the workers' path (Repository.ingest of a shard),
    by 1 and 2 processes at once, for two mixes of records."""
    import multiprocessing

    from pacswatch.store.repository import Repository
    from pacswatch.store.shards import ShardStore

    out = []
    context = multiprocessing.get_context("fork")
    for mix in ("observations", "exposures"):
        for writers in (1, 2):
            url = pg.create_database(f"ingest_{mix}_{writers}_{int(time.time())}")
            with Repository.open(url) as repo:
                scan = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f" * 64,
                                        targets_key="k" * 64, plan_size=records)
                spans = [(a, min(a + batch, records) - 1) for a in range(0, records, batch)]
                ids = ShardStore(repo.engine).create(scan, spans, queue="pacswatch", vantage="bench")
            shards = [(i, a, b) for i, (a, b) in zip(ids, spans)]
            start, results = context.Barrier(writers + 1), context.Queue()
            procs = [context.Process(target=_ingest_part, args=(url, scan, shards[n::writers], mix, start, results))
                     for n in range(writers)]
            for p in procs:
                p.start()
            start.wait(timeout=600)
            started = time.perf_counter()
            for _ in procs:
                results.get(timeout=600)
            elapsed = time.perf_counter() - started
            for p in procs:
                p.join()
            with Repository.open(url) as repo:
                stored = repo.scan(scan)["done"]
                observed = len(repo.observations(scan_id=scan))
            out.append({"mix": mix, "writers": writers, "records": stored, "observations": observed,
                        "seconds": round(elapsed, 2), "observations_per_s": round(observed / elapsed)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=12000)
    parser.add_argument("--per-worker", type=int, default=64, help="asyncio concurrency per worker (fixed)")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts to measure")
    parser.add_argument("--delay-ms", type=int, default=200, help="the responder's delay per reply (a distant "
                        "network; long enough that the network, not this machine's CPUs, is the limit)")
    parser.add_argument("--ingest-records", type=int, default=100_000)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    counts = [int(n) for n in args.workers.split(",")]
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    logs = RESULTS / f"distributed-{stamp}"
    logs.mkdir()
    addresses = loopback_addresses(args.endpoints, BASE)
    behaviour = {(ip, PORT): f"accept {args.delay_ms} 0 0" for ip in addresses}
    targets_file = logs / "targets.txt"
    targets_file.write_text("".join(f"{ip}:{PORT}\n" for ip in addresses))
    runs = []
    with ThrowawayPostgres() as pg, ThrowawayRedis(logs) as redis, \
            CResponder(behaviour=behaviour, threads=2, backlog=4096) as responder:
        if len(responder.endpoints) != args.endpoints:
            raise SystemExit("the responder did not bind every endpoint")
        for workers in counts:
            run = one_run(pg, redis, targets_file, args.endpoints, workers, args.per_worker, logs)
            runs.append(run)
            print(f"{workers} workers: {run['endpoints_per_s']:8.1f} endpoints/s, {run['cpu_s_per_1000']:.3f} CPU s "
                  f"per 1,000 endpoints, wall {run['wall_s']} s (shards of {run['shard_size']}); CPUs "
                  f"{run['machine_busy_pct']}% busy (all {os.cpu_count()} cores, every process on the machine), "
                  f"the workers used {run['worker_cores']} cores, load {run['load_avg_1m_after']}"
                  + ("" if run["machine_busy_pct"] < 80 else ": the CPUs, not the network, may have been the limit"),
                  flush=True)
        ingest = ingest_rate(pg, args.ingest_records)
    one = next((r for r in runs if r["workers"] == 1), None)
    for run in runs:
        run["scaling_vs_one"] = round(run["endpoints_per_s"] / one["endpoints_per_s"], 2) if one else None
        run["steady_scaling_vs_one"] = (round(run["steady_endpoints_per_s"] / one["steady_endpoints_per_s"], 2)
                                        if one and one["steady_endpoints_per_s"] and run["steady_endpoints_per_s"]
                                        else None)
    for run in runs:
        print(f"{run['workers']} workers: x{run['scaling_vs_one']} one worker's rate over the whole scan, "
              f"x{run['steady_scaling_vs_one']} between 10% and 90% done ({run['steady_endpoints_per_s']} endpoints/s)")
    for result in ingest:
        print(f"ingest, {result['mix']}, {result['writers']} writer(s): {result['observations_per_s']} "
              f"observations/s ({result['observations']} in {result['seconds']} s, batches of 1,000)")
    report = {"when": stamp, "cpus": os.cpu_count(), "load_before": os.getloadavg(), "delay_ms": args.delay_ms,
              "per_worker_concurrency": args.per_worker, "runs": runs, "ingest": ingest}
    (RESULTS / f"distributed-{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
