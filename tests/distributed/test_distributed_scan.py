"""Distributed scans end to end: redis-server, PostgreSQL and `pacswatch worker` processes, all
real, on loopback; the lab and the fast responder as the scanned peers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pacswatch.lab import Lab
from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.store.repository import Repository
from pacswatch.store.shards import ShardStore
from pacswatch.store.tables import observations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distributed_support import finish, pacswatch  # noqa: E402

BASE = f"127.67.{os.getpid() % 200}.0"  # this suite's loopback range


def findings_of(database: str, scan_id: int) -> dict:
    """(ip, port) -> (status, severity, service, product) of every observation of a scan."""
    with Repository.open(database) as repo:
        return {(o["ip"], o["port"]): (o["status"], o["severity"], o["service"], o["product"])
                for o in repo.observations(scan_id=scan_id)}


def one_per_endpoint(database: str, scan_id: int) -> tuple[int, int]:
    """(observations, distinct endpoints) of a scan."""
    with Repository.open(database) as repo, repo.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(observations)
                             .where(observations.c.scan_id == scan_id)).scalar_one()
        distinct = conn.execute(select(func.count()).select_from(
            select(observations.c.ip, observations.c.port).where(observations.c.scan_id == scan_id)
            .distinct().subquery())).scalar_one()
    return int(total), int(distinct)


def last_scan(database: str) -> dict:
    with Repository.open(database) as repo:
        return repo.scans(limit=1)[0]


@pytest.mark.slow
def test_distributed_scan_of_the_lab_finds_what_a_local_scan_finds(workers, redis, pg_url, postgres):
    with Lab(BASE, port=0, drip_interval=0.05, hold=30) as lab:
        targets = [f"{e.ip}:{e.port}" for e in lab.manifest]
        local_db = postgres.create_database(f"local_{os.getpid()}_{time.monotonic_ns() % 10**9}")
        local = pacswatch("scan", *targets, "--database", local_db, "--no-progress", "--no-attribute", "-q",
                          "--seed", "7", "--timeout", "2")
        assert local.returncode == 0, local.stderr
        workers.start(concurrency=2)
        workers.start(concurrency=2)
        workers.wait_live(2)
        done = pacswatch("scan", *targets, "--database", pg_url, "--broker", redis.url, "--no-progress",
                         "--no-attribute", "--seed", "7", "--timeout", "2", "--shard-size", "3", "-o", "-")
        assert done.returncode == 0, done.stderr + workers.logs()
    scan = last_scan(pg_url)
    assert scan["status"] == "finished" and scan["done"] == len(targets)
    expected = findings_of(local_db, last_scan(local_db)["id"])
    got = findings_of(pg_url, scan["id"])
    assert got == expected
    assert any(severity for _, severity, _, _ in got.values())  # the lab has findings to compare
    assert "Scan summary" in done.stderr
    # Standard output: the stored records, one JSON line each.
    assert len([line for line in done.stdout.splitlines() if line.startswith("{")]) == len(got)
    with Repository.open(pg_url) as repo:
        shards = ShardStore(repo.engine).of_scans([scan["id"]])
        assert {s["state"] for s in shards} == {"done"} and len(shards) == -(-len(targets) // 3)
        seen_by = {s["worker"] for s in shards}
        live = ShardStore(repo.engine).workers(live_only=True)
    assert len(seen_by) == 2, "both workers took shards"
    assert sum(w["tasks_done"] for w in live) == len(shards)
    listing = pacswatch("workers", "--database", pg_url, "--broker", redis.url)
    assert listing.returncode == 0 and listing.stdout.count("pong") == 2, listing.stdout


@pytest.mark.slow
@pytest.mark.parametrize("visibility", [4, 3600], ids=["redelivered-by-redis", "sent-again-by-the-scan"])
def test_sigkill_of_a_worker_mid_scan_loses_and_duplicates_nothing(workers, redis, pg_url, visibility):
    # 4 s: Redis gives the killed worker's unacknowledged shards to the other worker. An hour:
    # long past this test's end, so the scan command must see their stale leases and send them.
    addresses = loopback_addresses(300, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        victim = workers.start(concurrency=2, visibility=visibility)
        workers.start(concurrency=2, visibility=visibility)
        workers.wait_live(2)
        scan = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "scan", *targets, "--database", pg_url,
                                 "--broker", redis.url, "--rate", "120", "--shard-size", "20", "--no-progress", "-q",
                                 "--no-attribute"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with Repository.open(pg_url) as repo:
            deadline = time.monotonic() + 30

            def victim_running() -> list[int]:
                scans = repo.scans()
                if not scans or scans[0]["done"] < 60:  # past the start
                    return []
                return [s["id"] for s in ShardStore(repo.engine).of_scans([scans[0]["id"]], ["running"])
                        if s["worker"].startswith("w0.")]

            while True:  # frozen first, so that no shard of its ends between the look and the kill
                assert time.monotonic() < deadline, workers.logs()
                if victim_running():
                    os.killpg(victim.pid, signal.SIGSTOP)
                    if killed := victim_running():
                        break
                    os.killpg(victim.pid, signal.SIGCONT)
                time.sleep(0.05)
            scan_id = repo.scans()[0]["id"]
            os.killpg(victim.pid, signal.SIGKILL)  # the machine is gone: worker and pool processes
            victim.wait(timeout=10)
        # No resume: the shards move on by themselves.
        _, err = finish(scan, workers)
        assert scan.returncode == 0, err + workers.logs()
    assert visibility < 60 or "their workers went silent" in err, err
    with Repository.open(pg_url) as repo:
        retried = [ShardStore(repo.engine).get(i) for i in killed]
    assert all(s["state"] == "done" and s["tries"] >= 2 and s["worker"].startswith("w1.") for s in retried), \
        [(s["number"], s["state"], s["tries"], s["worker"]) for s in retried]
    scan = last_scan(pg_url)
    assert scan["status"] == "finished" and scan["done"] == len(targets)
    assert one_per_endpoint(pg_url, scan_id) == (len(targets), len(targets))
    assert sum(scan["counts"].values()) == len(targets)


def test_a_dead_broker_at_start_is_one_clear_error(pg_url, tmp_path):
    from pacswatch.distributed.throwaway import free_port  # not conftest: another conftest may hold that name by now

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = pacswatch("scan", f"{BASE[:-1]}1:11112", "--database", pg_url, "--broker", url, "--no-progress",
                       timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the broker" in lines[0] and url in lines[0], result.stderr
    with Repository.open(pg_url) as repo:
        assert repo.scans() == []  # nothing was stored


def scan_through_a_broker_restart(targets: list[str], pg_url: str, redis, workers, *, after: int, rate: int,
                                  shard_size: int) -> str:
    """A distributed scan whose broker is restarted (down 3 s, its queue forgotten) once `after`
    endpoints are stored; its standard error once it ended well."""
    scan = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "scan", *targets, "--database", pg_url,
                             "--broker", redis.url, "--rate", str(rate), "--shard-size", str(shard_size),
                             "--no-progress", "-q", "--no-attribute"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with Repository.open(pg_url) as repo:
        deadline = time.monotonic() + 30
        while not repo.scans() or repo.scans()[0]["done"] < after:
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.1)
    redis.stop()  # no persistence: its queue is forgotten
    time.sleep(3)
    redis.start()
    _, err = finish(scan, workers)
    assert scan.returncode == 0, err + workers.logs()
    return err


@pytest.mark.slow
def test_a_broker_restart_mid_scan_is_survived(workers, redis, pg_url):
    addresses = loopback_addresses(200, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        workers.start(concurrency=2)
        workers.wait_live(1)
        err = scan_through_a_broker_restart(targets, pg_url, redis, workers, after=30, rate=60, shard_size=10)
    # Seen down ("back"), or only by its new run id ("restarted") when no look fell in the 3 s.
    assert "the broker is back" in err or "the broker is restarted" in err, err
    scan_id = last_scan(pg_url)["id"]
    assert last_scan(pg_url)["done"] == len(targets)
    assert one_per_endpoint(pg_url, scan_id) == (len(targets), len(targets))


@pytest.mark.slow
def test_a_worker_holding_one_shard_survives_a_broker_restart(workers, redis, pg_url):
    # One shard in hand and a second slot waiting on the broker for more: the moment at which a
    # dropped Redis connection makes Celery's worker stop ("Unrecoverable error", kombu 5.7).
    # The worker must come back, and the shard it lost, whose message the restarted broker has
    # forgotten, must be sent again and finished.
    addresses = loopback_addresses(16, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        worker = workers.start(concurrency=2)
        workers.wait_live(1)
        scan_through_a_broker_restart(targets, pg_url, redis, workers, after=2, rate=2, shard_size=16)
        assert worker.poll() is None, "the worker stopped with the broker: " + workers.logs()
        again = pacswatch("scan", *targets[:2], "--database", pg_url, "--broker", redis.url, "--no-progress", "-q",
                          "--no-attribute")
        assert again.returncode == 0, again.stderr + workers.logs()
    scan_id = last_scan(pg_url)["id"] - 1
    assert one_per_endpoint(pg_url, scan_id) == (len(targets), len(targets))


@pytest.mark.slow
def test_vantages_scan_from_their_own_queues_and_history_shows_them(workers, redis, pg_url):
    addresses = loopback_addresses(6, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        workers.start("--vantage", "east")
        workers.start("--vantage", "west")
        workers.wait_live(2)
        result = pacswatch("scan", *targets, "--database", pg_url, "--broker", redis.url, "--vantage", "east,west",
                           "--no-progress", "-q", "--no-attribute", "--shard-size", "2")
        assert result.returncode == 0, result.stderr + workers.logs()
    with Repository.open(pg_url) as repo:
        scans = repo.scans()
        assert len(scans) == 2 and {s["parameters"]["vantage"] for s in scans} == {"east", "west"}
        for scan in scans:
            rows = repo.observations(scan_id=scan["id"])
            assert len(rows) == len(targets)
            assert {r["vantage"] for r in rows} == {scan["parameters"]["vantage"]}
            shards = ShardStore(repo.engine).of_scans([scan["id"]])
            # Each vantage's shards were taken by that vantage's worker only.
            assert {s["worker"].split(".")[0] for s in shards} == {"w0" if scan["parameters"]["vantage"] == "east"
                                                                   else "w1"}
    history = pacswatch("history", targets[0], "--database", pg_url, env={"COLUMNS": "200"})
    assert history.returncode == 0 and "@east" in history.stdout and "@west" in history.stdout, history.stdout


@pytest.mark.slow
def test_run_broker_rescans_on_the_workers(workers, redis, pg_url):
    addresses = loopback_addresses(4, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        local = pacswatch("scan", *targets, "--database", pg_url, "--no-progress", "-q", "--no-attribute")
        assert local.returncode == 0, local.stderr
        workers.start()
        workers.wait_live(1)
        rescan = pacswatch("run", "--now", f"{BASE}/24", "--database", pg_url, "--broker", redis.url, "--quiet")
        assert rescan.returncode == 0, rescan.stderr + workers.logs()
    with Repository.open(pg_url) as repo:
        [latest, first] = repo.scans(limit=2)
        assert latest["kind"] == "rescan" and latest["status"] == "finished" and latest["done"] == len(targets)
        shards = ShardStore(repo.engine).of_scans([latest["id"]])
        assert shards and {s["state"] for s in shards} == {"done"}
        assert ShardStore(repo.engine).of_scans([first["id"]]) == []  # the first scan ran here
        assert len(repo.observations(scan_id=latest["id"])) == len(targets)


@pytest.mark.slow
def test_sigterm_lets_a_worker_finish_its_shard_and_stop(workers, redis, pg_url):
    addresses = loopback_addresses(120, BASE)
    with FastResponder(addresses, [11112], workers=0) as responder:
        targets = [f"{ip}:{port}" for ip, port in responder.endpoints]
        first = workers.start()
        workers.wait_live(1)
        detached = pacswatch("scan", *targets, "--database", pg_url, "--broker", redis.url, "--detach", "-q",
                             "--rate", "40", "--shard-size", "60", "--no-attribute")
        assert detached.returncode == 0, detached.stderr
        scan_id = int(detached.stdout.split()[0])
        with Repository.open(pg_url) as repo:
            deadline = time.monotonic() + 30
            while repo.scan(scan_id)["done"] < 10:
                assert time.monotonic() < deadline, workers.logs()
                time.sleep(0.1)
            first.send_signal(signal.SIGTERM)  # warm shutdown: the shard under way (60 at 40/s) is finished
            assert first.wait(timeout=60) == 0, workers.logs()
            [finished, waiting] = ShardStore(repo.engine).of_scans([scan_id])
            assert finished["state"] == "done" and finished["worker"].startswith("w0.") and finished["tries"] == 1
            assert waiting["state"] == "queued" and waiting["tries"] == 0  # left for another worker
            assert repo.scan(scan_id)["done"] == 60
            assert ShardStore(repo.engine).workers(live_only=True) == []  # it said it is gone
            before = repo.scan(scan_id)["updated_at"]
            # `scan --resume` follows the scan to its end while the next worker takes the rest. It
            # starts while no worker runs: started after the worker, it raced it, and on a loaded
            # machine the scan was finished before the command looked ("nothing to resume").
            resumed = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "scan", "--resume", str(scan_id),
                                        "--database", pg_url, "--broker", redis.url, "--no-progress", "-q"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while repo.scan(scan_id)["updated_at"] == before:  # its first heartbeat: it is following
                assert resumed.poll() is None and time.monotonic() < deadline, resumed.communicate()
                time.sleep(0.2)
        workers.start()
        _, err = finish(resumed, workers)
        assert resumed.returncode == 0, err + workers.logs()
    assert one_per_endpoint(pg_url, scan_id) == (len(targets), len(targets))


def test_a_failed_shards_endpoints_are_listed(redis, pg_url):
    targets = [f"{ip}:11112" for ip in loopback_addresses(4, BASE)]  # never probed: no worker runs
    detached = pacswatch("scan", *targets, "--database", pg_url, "--broker", redis.url, "--detach", "-q",
                         "--shard-size", "2", "--seed", "3")
    assert detached.returncode == 0, detached.stderr
    scan_id = int(detached.stdout.split()[0])
    with Repository.open(pg_url) as repo:
        store = ShardStore(repo.engine)
        first, second = store.of_scans([scan_id])
        while store.take(first["id"], "crashing-worker", 3)[0] == "run":  # it killed three workers
            pass
    listing = pacswatch("shards", str(scan_id), "--endpoints", "--database", pg_url, env={"COLUMNS": "200"})
    assert listing.returncode == 0, listing.stderr
    lines = [line for line in listing.stdout.splitlines() if "\tshard " in line]
    assert len(lines) == 2 and all(line.endswith("\tshard 0") for line in lines)
    assert {line.split("\t")[0] for line in lines} < set(targets)
    assert "failed" in listing.stdout and "started 3 times" in listing.stdout


def test_a_followed_scan_waiting_for_workers_is_running_not_stalled(redis, pg_url):
    """Shards queued with no worker store nothing for longer than STALE (15 s); while the scan
    command follows them the scan is alive, and `scans` must say running, not stalled."""
    targets = [f"{ip}:11112" for ip in loopback_addresses(2, BASE)]  # never probed: no worker runs
    follower = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "scan", *targets, "--database", pg_url,
                                 "--broker", redis.url, "-q", "--seed", "5"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(20)
        assert follower.poll() is None  # still following: no worker took a shard
        listing = pacswatch("scans", "--database", pg_url, env={"COLUMNS": "200"})
        assert listing.returncode == 0, listing.stderr
        assert "running" in listing.stdout and "stalled" not in listing.stdout, listing.stdout
    finally:
        follower.send_signal(signal.SIGINT)
        try:
            follower.wait(timeout=30)
        except subprocess.TimeoutExpired:
            follower.kill()
