"""`pacswatch scan --workers N` as a user runs it: the same records as one process, each endpoint
probed once, blocked ones never handed to a worker, and a worker that dies stops the scan
loudly, resumable. Every endpoint is on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.lab.hostile import HostilePeers
from pacswatch.store import Repository

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
pytestmark = pytest.mark.timeout(240)


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outcomes(recs) -> set:
    return {(r["ip"], r["port"], r["status"], r["severity"]) for r in recs}


@pytest.fixture(scope="module")
def responder():
    addresses = loopback_addresses(60, "127.46.1.0")
    with FastResponder(addresses, [0], workers=0) as fast:
        yield fast


@contextlib.contextmanager
def tarpit_targets(tmp_path, base: str, count: int):
    """A targets file of `count` tarpits (every probe waits out its deadline): a scan that is
    still running when the test acts on it."""
    ip = loopback_addresses(1, base)[0]
    peers = HostilePeers([("tarpit", ip, 0)] * count, hold=60.0)
    ports = peers.start()
    try:
        targets = tmp_path / "targets.txt"
        targets.write_text("\n".join(f"{ip}:{port}" for port in ports) + "\n")
        yield targets
    finally:
        peers.stop()


def wait_for_workers(proc: subprocess.Popen, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(workers) < count:
        workers = [c for c in psutil.Process(proc.pid).children() if "pacswatch.scan.worker_main" in " ".join(c.cmdline())]
        time.sleep(0.1)
    assert len(workers) == count, "the workers did not start"
    return workers


def scan(tmp_path, name, targets, *extra, timeout=120):
    out = tmp_path / f"{name}.jsonl"
    proc = subprocess.run(PACSWATCH + ["scan", f"@{targets}", "--seed", "3", "--no-progress", "--no-attribute",
                                       "--timeout", "2", "-o", str(out), "--database",
                                       f"sqlite:///{tmp_path / (name + '.db')}", *extra],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, out


def test_two_workers_give_the_records_of_one_process(tmp_path, responder):
    answering = [f"{ip}:{port}" for ip, port in responder.endpoints]
    blocked = answering[:5]
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("\n".join(e.split(":")[0] for e in blocked) + "\n")
    targets = tmp_path / "targets.txt"
    # The answering endpoints, and addresses where nothing listens on that port.
    silent = [f"{ip}:{responder.endpoints[0][1]}" for ip in loopback_addresses(20, "127.46.2.0")]
    targets.write_text("\n".join(answering + silent) + "\n")

    one, one_out = scan(tmp_path, "one", targets, "--exclude", str(exclude), "--keep-all")
    two, two_out = scan(tmp_path, "two", targets, "--exclude", str(exclude), "--keep-all", "--workers", "2")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    one_recs, two_recs = records(one_out), records(two_out)
    assert len(two_recs) == len(answering) + len(silent)  # every endpoint once
    assert len({(r["ip"], r["port"]) for r in two_recs}) == len(two_recs)
    assert outcomes(two_recs) == outcomes(one_recs)
    by_status = {s: sum(r["status"] == s for r in two_recs) for s in {r["status"] for r in two_recs}}
    assert by_status == {"success": len(answering) - 5, "blocked": 5, "connection-refused": 20}, by_status
    with Repository.open(f"sqlite:///{tmp_path / 'two.db'}") as repo:
        stored = repo.scan(1)
    assert stored["status"] == "finished" and stored["done"] == stored["plan_size"] == len(two_recs)


def test_a_worker_that_dies_stops_the_scan_loudly_and_the_scan_resumes(tmp_path):
    with tarpit_targets(tmp_path, "127.46.3.0", 8) as targets:
        url = f"sqlite:///{tmp_path / 'killed.db'}"
        out = tmp_path / "killed.jsonl"
        proc = subprocess.Popen(PACSWATCH + ["scan", f"@{targets}", "--no-progress", "--no-attribute", "--timeout",
                                             "1", "--workers", "2", "-o", str(out), "--database", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            workers = wait_for_workers(proc, 2)
            time.sleep(1.0)  # they have their endpoints now
            workers[0].send_signal(signal.SIGKILL)
            stderr = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, stderr
        assert "scan worker" in stderr and "exit code -9" in stderr and "--resume 1" in stderr, stderr
        # No worker is left behind.
        assert not any(psutil.pid_exists(w.pid) and w.status() != psutil.STATUS_ZOMBIE for w in workers)
        with Repository.open(url) as repo:
            stopped = repo.scan(1)
        assert stopped["status"] == "interrupted" and stopped["done"] < stopped["plan_size"] == 8

        resumed = subprocess.run(PACSWATCH + ["scan", "--resume", "1", "--no-progress", "--no-attribute",
                                              "--workers", "2", "--database", url, "-o", str(out)],
                                 capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert resumed.returncode == 0, resumed.stderr
        with Repository.open(url) as repo:
            assert repo.scan(1)["done"] == 8


def test_the_worker_stops_when_the_scan_process_is_gone():
    """End of input without END: the scan process died; the worker exits at once."""
    from pacswatch.probes.registry import probe_settings

    settings = {"probe": probe_settings().stored(), "rate": 10, "concurrency": 2,
                "loop": "asyncio"}
    proc = subprocess.Popen([sys.executable, "-m", "pacswatch.scan.worker_main"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(json.dumps(settings).encode() + b"\n")
    proc.stdin.close()
    assert proc.wait(30) == 1, proc.stderr.read()
    assert proc.stdout.read() == b""
    assert b"Traceback" not in proc.stderr.read()


def test_ctrl_c_stops_the_scan_and_its_workers(tmp_path):
    """Ctrl-C at a terminal signals the whole process group: the workers ignore it, the scan
    process stops them, prints its summary, exits 130 and leaves the scan resumable."""
    with tarpit_targets(tmp_path, "127.46.4.0", 12) as targets:
        url = f"sqlite:///{tmp_path / 'interrupted.db'}"
        proc = subprocess.Popen(PACSWATCH + ["scan", f"@{targets}", "--no-progress", "--no-attribute", "--timeout",
                                             "2", "--workers", "2", "--concurrency", "4", "--database", url,
                                             "-o", str(tmp_path / "out.jsonl")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            workers = wait_for_workers(proc, 2)
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGINT)
            stderr = proc.communicate(timeout=60)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr, stderr
        assert not any(psutil.pid_exists(w.pid) and w.status() != psutil.STATUS_ZOMBIE for w in workers)
        with Repository.open(url) as repo:
            assert repo.scan(1)["status"] == "interrupted"


@pytest.mark.parametrize("count", [600, 300], ids=["more-than-the-workers-hold", "all-handed-over-at-once"])
def test_an_opt_out_during_the_scan_reaches_all_but_the_probes_under_way(tmp_path, count):
    """The scan process checks the live opt-out list when it hands an endpoint over, and sends
    the workers the list when it changes, which they check before every connect. 600 tarpits on
    one address, 128 probes per worker: after `optout add` of that address, only the probes
    already connected (at most 2 x 128) have reached it; the rest are `blocked`, also the 64 per
    worker waiting in its queue (worker_pool.handover_window). Before the workers were sent the
    list, those were probed too (up to 2 x 192); with the older window, up to 512. With 300, the
    whole plan is in the workers' hands from the start (the scan process has said END), and the
    list must still reach them."""
    with tarpit_targets(tmp_path, "127.46.5.0", count) as targets:
        ip = targets.read_text().split(":")[0]
        url = f"sqlite:///{tmp_path / 'optout.db'}"
        out = tmp_path / "optout.jsonl"
        proc = subprocess.Popen(PACSWATCH + ["scan", f"@{targets}", "--no-progress", "--no-attribute", "--timeout",
                                             "5", "--workers", "2", "--concurrency", "256", "--rate", "100000",
                                             "-o", str(out), "--database", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            wait_for_workers(proc, 2)
            time.sleep(1.0)  # every window is full; no tarpit has answered (they hold for 6 s)
            added = subprocess.run(PACSWATCH + ["optout", "add", ip, "--contact", "pacs-admin@hospital.example",
                                                "--database", url], capture_output=True, text=True, timeout=60)
            assert added.returncode == 0, added.stderr
            stderr = proc.communicate(timeout=120)[1]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, stderr
    recs = records(out)
    assert len(recs) == count and len({(r["ip"], r["port"]) for r in recs}) == count
    probed = [r for r in recs if r["status"] != "blocked"]
    assert 0 < len(probed) <= 2 * 128, len(probed)
    assert all("opt-out" in r["detail"] for r in recs if r["status"] == "blocked")
