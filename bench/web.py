"""How fast the dashboard's pages are on a large database: server time of `/` and of filtered
`/findings` pages (issue 13's target: under 300 ms each).

    python bench/web.py [--findings 100000] [--observations 1000000] [--database FILE] [--repeat 7]

Builds the database first (skipped when --database names one this script already filled): the
findings, their services, 1,000,000 observations spread over twelve weekly full scans, the
lifecycle events, attributions for a third of the addresses, through the store's own tables and
its bulk statements (store/bulk.py), with the migrations' indexes. Addresses are on 127.0.0.0/8
and are data only: nothing is sent anywhere.

Then it serves the real application in-process (httpx to the ASGI app, no socket). It first
views the overview until every finished scan has been summed (once per scan, kept in
scan_exposure; timed apart as the warm-up), then times each page: the first request and the
median of --repeat more. The overview's aggregates are kept and recomputed in the background
when the data changes; "/ (aggregates recomputed ...)" times that computation as the first view
after a start pays it (no kept overview). A page's time is the application's, from the request to the last byte of the
answer: the server time, without a browser or a network. Results go to stdout and
bench/results/web-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pacswatch.store.bulk import BulkStatement
from pacswatch.store.engine import open_database
from pacswatch.store.notify_tables import attributions
from pacswatch.store.tables import finding_events, findings, observations, scans, services

SEVERITIES = ("critical", "high", "medium", "low")
PRODUCTS = (("Orthanc", "1.12.4"), ("DCMTK", "3.6.7"), ("dcm4chee-arc", "5.31.0"), ("Conquest", "1.5.0"),
            ("OHIF Viewer", None), ("ClearCanvas", "13.2"), (None, None))
PORTS = (104, 11112, 4242, 8042, 80, 443, 2762)
SCANS = 12  # weekly full scans: about ten looks at each of 100,000 endpoints make a million
NOW = datetime.now(timezone.utc).replace(microsecond=0)
FIRST = NOW - timedelta(weeks=SCANS)


def endpoint(n: int) -> tuple[str, int]:
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", PORTS[n % len(PORTS)]


def _insert(conn, table, rows, memo) -> None:
    BulkStatement("insert-id" if "id" in rows[0] else "insert", table, conn.dialect).execute(conn, rows, memo)


def build(url: str, count: int, looks: int) -> None:
    """`count` findings; `looks` observations over SCANS weekly scans (each looks at every
    endpoint that is still there; fixed ones stop answering after their fix)."""
    engine = open_database(url)
    per_scan = max(1, looks // SCANS)
    memo: dict = {}
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execution_options(pacswatch_write=True)
        with conn.begin():
            scan_rows = [{"id": s + 1, "kind": "scan", "status": "finished", "operator": "bench@here",
                          "command": "pacswatch scan 127.0.0.0/8", "parameters": {}, "seed": s,
                          "plan_fingerprint": "b" * 64, "targets_key": "k" * 64, "plan_size": per_scan,
                          "done": per_scan, "counts": {"success": per_scan}, "created_at": FIRST + timedelta(weeks=s),
                          "updated_at": FIRST + timedelta(weeks=s, hours=2), "finished_at": FIRST + timedelta(weeks=s, hours=2),
                          "pid": None, "host": "bench", "version": "bench"} for s in range(SCANS)]
            _insert(conn, scans, scan_rows, memo)
            obs_id = 0
            for start in range(0, count, 10_000):
                found, svc, events, obs, attr = [], [], [], [], []
                for n in range(start, min(start + 10_000, count)):
                    ip, port = endpoint(n)
                    severity = SEVERITIES[(n // 5) % 4]  # independent of the port (n % 7) and the status (n % 4)
                    product, version = PRODUCTS[n % len(PRODUCTS)]
                    first_scan = n % 3  # most were there from the first scans
                    first_seen = FIRST + timedelta(weeks=first_scan, minutes=n % 60)
                    status = ("fixed" if n % 4 == 0 else "opted-out" if n % 50 == 1 else
                              "reopened" if n % 25 == 2 else "open")
                    fixed_scan = SCANS - 1 - (n % 6) if status == "fixed" else None
                    last_scan = fixed_scan - 2 if fixed_scan is not None else SCANS - 1
                    last_seen = FIRST + timedelta(weeks=last_scan, minutes=n % 60)
                    fixed_at = FIRST + timedelta(weeks=fixed_scan, minutes=n % 60) if fixed_scan is not None else \
                        (NOW - timedelta(days=n % 20) if status == "opted-out" else None)
                    studies, patients = (n % 5000, n % 700) if port not in (80, 443) else (None, None)
                    for s in range(first_scan, (last_scan if fixed_scan is None else fixed_scan) + 1):
                        if obs_id >= looks:
                            break
                        obs_id += 1
                        at = FIRST + timedelta(weeks=s, minutes=n % 60)
                        answered = s <= last_scan
                        obs.append({"id": obs_id, "scan_id": s + 1, "plan_index": n, "vantage": None, "ip": ip, "port": port,
                                    "transport": "tcp", "status": "success" if answered else "connection-refused",
                                    "service": "dicom" if answered else None,
                                    "severity": severity if answered else None,
                                    "product": product if answered else None,
                                    "product_version": version if answered else None,
                                    "studies": studies if answered else None, "patients": patients if answered else None,
                                    "scanned_at": at,
                                    "record": {"ip": ip, "port": port, "status": "success" if answered else
                                               "connection-refused", "service": "dicom" if answered else None,
                                               "severity": severity if answered else None,
                                               "product": {"name": product, "version": version} if answered and product
                                               else None, "reasons": ["C-FIND answers"] if answered else [],
                                               "scanned_at": at.isoformat()}})
                    svc.append({"id": n + 1, "ip": ip, "port": port, "transport": "tcp", "service": "dicom",
                                "product": product, "product_version": version, "status": "success",
                                "severity": severity, "studies": studies, "patients": patients,
                                "first_seen": first_seen, "last_seen": last_seen, "last_checked": last_seen,
                                "last_scan_id": last_scan + 1, "last_observation_id": obs_id,
                                "next_due": NOW + timedelta(hours=n % 48)})
                    found.append({"id": n + 1, "ip": ip, "port": port, "status": status, "severity": severity,
                                  "first_seen": first_seen, "last_seen": last_seen, "fixed_at": fixed_at,
                                  "missed_since": None, "reopened_at": last_seen if status == "reopened" else None,
                                  "reopen_count": 1 if status == "reopened" else 0, "reasons": ["C-FIND answers"],
                                  "last_observation_id": obs_id,
                                  # one in 200 judged a honeypot (deception.py), none overridden
                                  "deception_verdict": "honeypot" if n % 200 == 0 else None,
                                  "deception_confidence": 0.8 if n % 200 == 0 else None,
                                  "deception_override": None, "override_reason": None, "override_by": None,
                                  "override_at": None})
                    events.append({"finding_id": n + 1, "scan_id": first_scan + 1, "at": first_seen, "kind": "new",
                                   "old_severity": None, "new_severity": severity, "observation_id": None,
                                   "marked_by": None, "reason": None})
                    if fixed_at is not None:
                        events.append({"finding_id": n + 1, "scan_id": (fixed_scan or 0) + 1, "at": fixed_at,
                                       "kind": "fixed" if status == "fixed" else "opted-out", "old_severity": severity,
                                       "new_severity": None, "observation_id": None, "marked_by": None, "reason": None})
                    if n % 3 == 0:
                        attr.append({"ip": ip, "owner_key": f"org:{n % 900}", "owner_name": f"Hospital {n % 900}",
                                     "contact": f"security@h{n % 900}.example", "contact_role": "abuse",
                                     "escalation": None, "confidence": 0.8, "language": "en", "cloud": None,
                                     "reasons": [], "facts": [], "facts_digest": "d" * 32, "decided_at": NOW})
                _insert(conn, services, svc, memo)
                _insert(conn, findings, found, memo)
                _insert(conn, finding_events, events, memo)
                if attr:
                    _insert(conn, attributions, list({a["ip"]: a for a in attr}.values()), memo)
                for part in range(0, len(obs), 20_000):
                    _insert(conn, observations, obs[part:part + 20_000], memo)
                memo.clear()
                print(f"  built {min(start + 10_000, count):>7,} findings, {obs_id:>9,} observations "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    with engine.connect() as conn:  # what a long-lived database has: the planner's statistics
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def measure(url: str, pages: list[str], repeat: int) -> list[dict]:
    import httpx

    from pacswatch.web import accounts
    from pacswatch.web.app import create_app
    from pacswatch.web.queries_overview import OverviewCache
    from pacswatch.web.settings import WebSettings

    app = create_app(WebSettings(database_url=url))
    engine = app.state.engine
    if not any(u["name"] == "bench" for u in accounts.list_users(engine)):
        accounts.add_user(engine, "bench", "viewer", "bench password!", NOW)
    token = accounts.new_api_token(engine, "bench", NOW, "bench")
    results = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            page = await client.get("/login")
            csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            await client.post("/login", data={"name": "bench", "password": "bench password!", "csrf_token": csrf})
            # The overview sums each finished scan once (at most SUM_BUDGET per view): the first
            # views after a scan pay for that. Timed here, apart from the steady state below.
            warm, started = 0, time.perf_counter()
            while True:
                warm += 1
                page = await client.get("/")
                if 'id="scans-pending"' not in page.text:
                    break
                await asyncio.sleep(0.2)  # the sums go on in the background between views
            warming = {"views": warm, "seconds": round(time.perf_counter() - started, 1)}
            print(f"  overview warm-up: {warm} views, {warming['seconds']} s (each finished scan summed once)",
                  flush=True)
            results.append({"page": "overview warm-up", **warming})
            for path in pages:
                times, size = [], 0
                recompute = path == RECOMPUTED
                path = "/" if recompute else path
                for _ in range(repeat + 1):
                    if recompute:  # as after a change in the data: the aggregates are read again
                        app.state.overview_cache = OverviewCache()
                    headers = {"Authorization": f"Bearer {token}"} if path.startswith("/api/") else {}
                    started = time.perf_counter()
                    answer = await client.get(path, headers=headers)
                    times.append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:300]}")
                    size = len(answer.content)
                warm = statistics.median(times[1:])
                label = RECOMPUTED if recompute else path
                results.append({"page": label, "first_ms": round(times[0], 1), "median_ms": round(warm, 1),
                                "max_ms": round(max(times[1:]), 1), "bytes": size})
                print(f"  {label:<72} first {times[0]:7.1f} ms   median {warm:7.1f} ms   "
                      f"max {max(times[1:]):7.1f} ms   {size / 1024:6.1f} KiB", flush=True)

    asyncio.run(run())
    engine.dispose()
    return results


RECOMPUTED = "/ (no kept aggregates: the first view after a start)"
PAGES = [
    "/",
    RECOMPUTED,
    "/findings",
    "/findings?severity=critical&status=active&port=104",
    "/findings?status=active&product=orthanc&sort=-last_seen",
    "/findings?network=127.1.0.0/16&severity=high&severity=critical",
    "/findings?q=Hospital+12&status=active",
    "/findings?owner=hospital+7&sort=-first_seen",
    "/findings?first_seen_from={day}&sort=address",
    "/findings/{middle}",
    "/api/v1/findings?severity=critical&status=active&limit=100",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=100_000)
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--database", help="SQLite file (kept; built when missing) or postgresql:// URL (filled "
                        "when empty)")
    parser.add_argument("--postgresql", action="store_true", help="on a throwaway PostgreSQL server on loopback "
                        "(store/throwaway.py) instead of SQLite")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page after the first")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pacswatch-web-bench-"))
        if args.postgresql:
            from pacswatch.store.throwaway import ThrowawayPostgres

            url = stack.enter_context(ThrowawayPostgres()).create_database("webbench")
        else:
            url = args.database or os.path.join(tmp, "web.db")
        fresh = args.postgresql or "://" in url or not Path(url).exists()
        if fresh:
            print(f"building {args.findings:,} findings and {args.observations:,} observations in {url}",
                  file=sys.stderr, flush=True)
            started = time.perf_counter()
            build(url, args.findings, args.observations)
            print(f"  built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        day = (FIRST + timedelta(weeks=2)).date().isoformat()
        pages = [p.format(day=day, middle=args.findings // 2) if p != RECOMPUTED else p for p in PAGES]
        results = measure(url, pages, args.repeat)
    served = [r for r in results if "median_ms" in r and r["page"] != RECOMPUTED]
    worst = max(served, key=lambda r: r["median_ms"])
    computed = next(r for r in results if r["page"] == RECOMPUTED)
    print(f"slowest page: {worst['page']} median {worst['median_ms']:.1f} ms (target: under 300 ms); the overview's "
          f"computation (first view after a start, then in the background) median {computed['median_ms']:.1f} ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.no_save:
        out = Path(__file__).with_name("results")
        out.mkdir(exist_ok=True)
        target = out / f"web-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        target.write_text(json.dumps({"backend": "postgresql" if args.postgresql else "sqlite",
                                      "findings": args.findings, "observations": args.observations,
                                      "load_average": os.getloadavg()[0], "pages": results}, indent=2))
        print(f"results: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
