"""Issue 14's gaps, end to end on real redis-server, PostgreSQL and `pacswatch worker` processes:
the plan read once (workers need none of the command's files), the scan's lifecycle settings on
the workers, owners looked up after a distributed scan, a shard outliving the visibility timeout
probed once, and a finding seen from one vantage only not flapping."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from pacswatch.lab import Lab
from pacswatch.distributed.throwaway import free_port
from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.store.repository import Repository
from pacswatch.store.shards import ShardStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import pacswatch  # noqa: E402

pytestmark = pytest.mark.slow
BASE = f"127.68.{os.getpid() % 200}.0"  # this file's loopback range


def wait_ended(database: str, scan_id: int, timeout: float = 90) -> dict:
    """The scan's row once it is no longer running (workers end a detached scan)."""
    deadline = time.monotonic() + timeout
    with Repository.open(database) as repo:
        while True:
            scan = repo.scan(scan_id)
            if scan is not None and scan["status"] != "running":
                return scan
            assert time.monotonic() < deadline, f"scan {scan_id} still running"
            time.sleep(0.2)


def finding_of(database: str, ip: str) -> dict:
    with Repository.open(database) as repo:
        [row] = [f for f in repo.findings() if f["ip"] == ip]
    return row


def test_workers_need_none_of_the_commands_files(workers, redis, pg_url, tmp_path):
    addresses = loopback_addresses(6, BASE)
    with FastResponder(addresses[:4], [11112], workers=0):
        # Targets from a file; one excluded by a file; one outside the scope file; two listen on nothing.
        listing = tmp_path / "targets.txt"
        listing.write_text("".join(f"{ip}:11112\n" for ip in addresses))
        exclude = tmp_path / "exclude.txt"
        exclude.write_text(f"{addresses[0]}  # asked not to be scanned\n")
        scope = tmp_path / "scope.txt"
        scope.write_text("".join(f"{ip}\n" for ip in addresses[:5]))
        detached = pacswatch("scan", f"@{listing}", "--exclude", str(exclude), "--scope", str(scope), "--keep-all",
                             "--database", pg_url, "--broker", redis.url, "--detach", "-q", "--no-attribute",
                             "--shard-size", "2", "--timeout", "2")
        assert detached.returncode == 0, detached.stderr
        scan_id = int(detached.stdout.split()[0])
        for path in (listing, exclude, scope):  # the command has started: its files may go
            path.unlink()
        workers.start(concurrency=2)
        scan = wait_ended(pg_url, scan_id)
    assert scan["status"] == "finished" and scan["done"] == 6, workers.logs()
    assert scan["counts"].get("blocked") == 2 and scan["counts"].get("success") == 3, scan["counts"]
    with Repository.open(pg_url) as repo:
        rows = {o["ip"]: o for o in repo.observations(scan_id=scan_id)}
        assert {s["state"] for s in ShardStore(repo.engine).of_scans([scan_id])} == {"done"}
    # --keep-all reached the workers: the address that listens on nothing is kept too.
    assert rows[addresses[5]]["status"] == "blocked" and rows[addresses[4]]["status"] == "connection-refused"
    reasons = {ip: json.dumps(row["record"]) for ip, row in rows.items()}
    assert f"excluded by {exclude} line 1" in reasons[addresses[0]]  # the file's name, read by the command


def lab_at(base: str, port: int, *names: str) -> Lab:
    """Lab peers with findings (the fast responder's have none) at a fixed port, so that a test
    can stop them and start them again at the same endpoints."""
    return Lab(base, port=port, names=list(names) or ["open-archive"], drip_interval=0.05, hold=30)


def test_confirm_fixed_after_reaches_the_workers(workers, redis, pg_url):
    base, port = BASE[:-2] + ".100", free_port()
    workers.start()
    workers.wait_live(1)

    def scan(target: str, *extra: str) -> None:
        result = pacswatch("scan", target, "--database", pg_url, "--broker", redis.url, "-q",
                           "--no-progress", "--no-attribute", "--timeout", "2", *extra)
        assert result.returncode == 0, result.stderr + workers.logs()

    with lab_at(base, port) as lab:
        [endpoint] = lab.manifest
        target = f"{endpoint.ip}:{endpoint.port}"
        scan(target)
    assert finding_of(pg_url, endpoint.ip)["status"] == "open"
    scan(target, "--confirm-fixed-after", "0")  # nothing listens now: the first miss
    assert finding_of(pg_url, endpoint.ip)["missed_since"] is not None
    scan(target, "--confirm-fixed-after", "0")  # the second, at once: fixed under 0, not under the default 6 h
    assert finding_of(pg_url, endpoint.ip)["status"] == "fixed"


def test_owners_are_looked_up_after_a_distributed_scan(workers, redis, pg_url, monkeypatch):
    monkeypatch.delenv("PACSWATCH_NOTIFY_CONFIG", raising=False)  # the defaults: no DNS, the owners table
    base = BASE[:-2] + ".110"
    added = pacswatch("owners", "add", f"{base[:-4]}.0/24", "--name", "Lab Hospital", "--contact",
                      "it@lab-hospital.example.org", "--database", pg_url)
    assert added.returncode == 0, added.stderr
    with lab_at(base, free_port(), "open-archive", "echo-only") as lab:
        first, second = (f"{e.ip}:{e.port}" for e in lab.manifest)
        workers.start(concurrency=2)
        workers.start(concurrency=2)
        workers.wait_live(2)
        followed = pacswatch("scan", first, "--database", pg_url, "--broker", redis.url, "--no-progress",
                             "--timeout", "2", "-o", "-")
        assert followed.returncode == 0, followed.stderr + workers.logs()
        assert "attributed 1 exposed addresses" in " ".join(followed.stderr.split())
        assert "attributed" not in workers.logs()  # the command did it, not a worker
        detached = pacswatch("scan", first, second, "--database", pg_url, "--broker", redis.url, "--detach", "-q",
                             "--shard-size", "1", "--timeout", "2")
        assert detached.returncode == 0, detached.stderr
        wait_ended(pg_url, int(detached.stdout.split()[0]))
        deadline = time.monotonic() + 30
        while "attributed" not in workers.logs():  # written just after the scan ends
            assert time.monotonic() < deadline, workers.logs()
            time.sleep(0.2)
    time.sleep(2)  # a second worker ending the same scan would have said so by now
    # Exactly once, by the worker that ended the scan, for both addresses.
    assert workers.logs().count("attributed") == 1 and "attributed 2 exposed addresses" in workers.logs()
    cases = pacswatch("cases", "--json", "--database", pg_url)
    assert cases.returncode == 0 and len(cases.stdout.splitlines()) == 1, cases.stdout  # one owner, one case


class SilentServers:
    """Listeners that accept, count each connection and say nothing: a probe waits for its
    timeout on each, so a shard of them is slow."""

    def __init__(self, addresses: list[str], port: int = 11112) -> None:
        self.connections: Counter = Counter()
        self.sockets = []
        for ip in addresses:
            sock = socket.create_server((ip, port))
            self.sockets.append(sock)
            threading.Thread(target=self._accept, args=(sock, ip), daemon=True).start()

    def _accept(self, sock: socket.socket, ip: str) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            self.connections[ip] += 1
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    @staticmethod
    def _hold(conn: socket.socket) -> None:
        with conn:
            while conn.recv(4096):
                pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def test_a_shard_longer_than_the_visibility_timeout_is_probed_once(workers, redis, pg_url):
    addresses = loopback_addresses(7, BASE[:-2] + ".120")
    servers = SilentServers(addresses)
    try:
        # How many connections one probe of a silent endpoint makes (a local scan of one).
        local = pacswatch("scan", f"{addresses[0]}:11112", "--database", pg_url, "-q", "--no-progress",
                          "--no-attribute", "--timeout", "1")
        assert local.returncode == 0, local.stderr
        per_probe = servers.connections[addresses[0]]
        assert per_probe >= 1
        # Two workers, one shard at a time each; the shard of six takes ~6 s, the broker gives
        # it to the idle worker after 1 s.
        workers.start(visibility=1)
        workers.start(visibility=1)
        workers.wait_live(2)
        result = pacswatch("scan", *(f"{ip}:11112" for ip in addresses[1:]), "--database", pg_url, "--broker",
                           redis.url, "-q", "--no-progress", "--no-attribute", "--timeout", "1", "--concurrency",
                           "1", "--shard-size", "6")
        assert result.returncode == 0, result.stderr + workers.logs()
    finally:
        servers.close()
    assert {ip: servers.connections[ip] for ip in addresses[1:]} == {ip: per_probe for ip in addresses[1:]}, \
        workers.logs()
    with Repository.open(pg_url) as repo:
        [shard] = ShardStore(repo.engine).of_scans([repo.scans(limit=1)[0]["id"]])
    assert shard["state"] == "done" and shard["tries"] == 1


def test_a_finding_seen_from_one_vantage_only_does_not_flap(workers, redis, pg_url):
    base, port = BASE[:-2] + ".130", free_port()
    workers.start("--vantage", "east")
    workers.start("--vantage", "west")
    workers.wait_live(2)
    ip = ""

    def scan(vantage: str) -> str:
        result = pacswatch("scan", f"{ip}:{port}", "--database", pg_url, "--broker", redis.url, "--vantage", vantage,
                           "-q", "--no-progress", "--no-attribute", "--timeout", "2", "--confirm-fixed-after", "0")
        assert result.returncode == 0, result.stderr + workers.logs()
        return finding_of(pg_url, ip)["status"]

    # Reachable from east only: west's scans run while it is down.
    with lab_at(base, port) as lab:
        ip = lab.manifest[0].ip
        assert scan("east") == "open"
    assert [scan("west") for _ in range(3)] == ["open"] * 3  # west never saw it: its misses are not misses
    with lab_at(base, port):
        assert scan("east") == "open"
    assert scan("west") == "open"
    assert finding_of(pg_url, ip)["missed_since"] is None
    assert [scan("east"), scan("east")] == ["open", "fixed"]  # east saw it: two of its misses fix it
    with Repository.open(pg_url) as repo:
        kinds = [e["kind"] for e in repo.events(ip=ip)]
    assert sorted(kinds) == sorted(["new", "missed", "fixed"]), kinds
