"""Storing in a child process (campaign/store_process.py): the same rows as the store thread,
a child's failure stops the scan with its reason, the child dies with a killed scan, and the
thread is kept where a process cannot help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from rich.console import Console

from pacswatch.campaign import store_process
from pacswatch.campaign.scanrun import StoreSink, execute, plan_from_parameters, start_scan
from pacswatch.campaign.scope import campaign_blocklist, campaign_scope
from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.probes.base import ProbeOptions, Timeouts
from pacswatch.probes.registry import ProbeSelector
from pacswatch.scan.job import ScanJob
from pacswatch.store import Repository
from pacswatch.store.errors import StoreError

pytestmark = pytest.mark.timeout(180)
NET = f"127.56.{os.getpid() % 200}"


@pytest.fixture(scope="module")
def responders():
    with FastResponder(loopback_addresses(30, f"{NET}.0"), ports=[0], workers=0) as running:
        yield [f"{ip}:{port}" for ip, port in running.endpoints]


def scan(repo, targets, monkeypatch, *, process: bool, seed: int = 1):
    monkeypatch.setenv("PACSWATCH_STORE_PROCESS", "1" if process else "0")
    parameters = {"targets": targets, "ports": [], "seed": seed}
    plan = plan_from_parameters(parameters, campaign_blocklist(repo.optouts(), ()), campaign_scope(None, ()))
    job = ScanJob(plan=None, probe_for=ProbeSelector().probe_for,
                  options=ProbeOptions(timeouts=Timeouts.scaled(1.0), ae_guess=()), rate=1000, concurrency=8,
                  stderr=Console(stderr=True, quiet=True), show_progress=False, show_summary=False)
    return execute(repo, start_scan(repo, plan, parameters), plan, job, batch=7)


def stored(repo) -> dict:
    """What a scan left in the database, without ids and times."""
    findings = sorted((f["ip"], f["port"], f["status"], f["severity"], f["studies"], f["patients"])
                      for f in repo.findings())
    observations = sorted((o["ip"], o["port"], o["status"], o["severity"]) for o in repo.observations())
    scan_row = repo.scan(1)
    return {"findings": findings, "observations": observations, "counts": scan_row["counts"],
            "status": scan_row["status"], "done": repo.completed(1).intervals()}


def test_the_child_stores_what_the_thread_stores(database_url, tmp_path, responders, monkeypatch):
    targets = responders + [f"{NET}.250:1"]  # and a refused one
    with Repository.open(database_url) as repo:
        assert store_process.suitable(repo)
        outcome = scan(repo, targets, monkeypatch, process=True)
        by_process = stored(repo)
    with Repository.open(f"sqlite:///{tmp_path / 'thread.db'}") as repo:
        scan(repo, targets, monkeypatch, process=False)
        by_thread = stored(repo)
    assert outcome.status == "finished" and outcome.changes.new == len(responders)
    assert by_process == by_thread
    assert len(by_process["observations"]) == len(responders)  # the refused one is counted, not kept
    assert by_process["done"] == [(0, len(targets) - 1)]


def test_a_failing_child_stops_the_scan_with_its_reason(tmp_path, responders, monkeypatch):
    url = f"sqlite:///{tmp_path / 'refusing.db'}"
    with Repository.open(url) as repo:
        with repo.engine.begin() as conn:  # the database refuses observations: the child fails
            conn.exec_driver_sql("CREATE TRIGGER no_obs BEFORE INSERT ON observations "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
        with pytest.raises(StoreError, match="refused by the test trigger"):
            scan(repo, responders[:5], monkeypatch, process=True)
        assert len(repo.completed(1)) == 0  # nothing counted done: a resume probes them all
        assert repo.scan(1)["status"] == "interrupted"


def test_the_child_dies_with_a_killed_scan(tmp_path):
    # A scan that takes a while (a silent listener, 3 s timeout), killed with SIGKILL: its store
    # child must not go on writing behind the resumed scan's back.
    import socket

    silent = socket.create_server((f"{NET}.240", 0))
    port = silent.getsockname()[1]
    try:
        scanner = subprocess.Popen(
            [sys.executable, "-m", "pacswatch.cli", "scan", f"{NET}.240:{port}", "--timeout", "3", "--quiet",
             "-o", str(tmp_path / "out.jsonl"), "--database", str(tmp_path / "killed.db")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PACSWATCH_STORE_PROCESS": "1"})
        child = None
        for _ in range(200):
            children = psutil.Process(scanner.pid).children()
            child = next((c for c in children if "store_process" in " ".join(c.cmdline())), None)
            if child is not None:
                break
            time.sleep(0.05)
        assert child is not None, "no store process started"
        scanner.send_signal(signal.SIGKILL)
        scanner.wait(10)
        gone, alive = psutil.wait_procs([child], timeout=5)
        assert child in gone and not alive
    finally:
        silent.close()


def test_the_thread_stays_where_a_process_cannot_help(monkeypatch, tmp_path):
    with Repository.open("sqlite://") as memory:
        assert not store_process.suitable(memory)  # another process cannot open it
    with Repository.open(f"sqlite:///{tmp_path / 'x.db'}") as repo:
        assert store_process.suitable(repo)
        monkeypatch.setenv("PACSWATCH_STORE_PROCESS", "0")
        assert not store_process.suitable(repo)
        monkeypatch.setenv("PACSWATCH_STORE_PROCESS", "1")
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        assert not store_process.suitable(repo)
    assert issubclass(store_process.StoreProcess, StoreSink)
