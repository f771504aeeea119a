"""Campaign scans against lab servers on loopback, on SQLite and PostgreSQL: the lifecycle over
three scans, opt-out and scope (the watched server sees no connection), the run loop."""

from __future__ import annotations

import os
import selectors
import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from pacswatch.campaign.runloop import RunLoop
from pacswatch.campaign.scanrun import execute, plan_from_parameters, start_scan
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.campaign.scope import campaign_blocklist, campaign_scope
from pacswatch.lab.pacs import PacsServer
from pacswatch.probes.base import ProbeOptions, Timeouts
from pacswatch.probes.registry import ProbeSelector
from pacswatch.scan.job import ScanJob

pytestmark = pytest.mark.timeout(180)
BASE = f"127.53.{os.getpid() % 200}"


def make_job(parameters: dict | None = None) -> ScanJob:
    """A job for the lab; `parameters` (a scan's, from RunLoop) may say `find: false`."""
    find = ((parameters or {}).get("probe") or {}).get("find", True)
    options = ProbeOptions(timeouts=Timeouts.scaled(1.0), ae_guess=(), find=find)
    return ScanJob(plan=None, probe_for=ProbeSelector().probe_for, options=options, rate=500, concurrency=16,
                   stderr=Console(stderr=True, quiet=True), show_progress=False, show_summary=False,
                   event_loop="asyncio")


def build_plan(repo, parameters):
    return plan_from_parameters(parameters, campaign_blocklist(repo.optouts(), parameters.get("exclude") or ()),
                                campaign_scope(parameters.get("scope"), repo.scope_entries()))


def scan(repo, targets, seed=1, policy=None):
    parameters = {"targets": targets, "ports": [], "seed": seed}
    plan = build_plan(repo, parameters)
    return execute(repo, start_scan(repo, plan, parameters), plan, make_job(), policy=policy)


def free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


class Watched:
    """A listener that counts every connection made to it and closes it at once."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(64)
        self.address = f"{ip}:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if sel.select(0.05):
                    conn, _ = self.sock.accept()
                    self.connections += 1
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def watched():
    made = []

    def make(ip):
        made.append(Watched(ip))
        return made[-1]

    yield make
    for w in made:
        w.close()


def kinds(outcome):
    return sorted((e["kind"], e["ip"]) for e in outcome.events)


def test_lifecycle_over_four_scans_of_the_lab(repo):
    ips = {name: f"{BASE}.{n}" for n, name in ((10, "a"), (11, "b"), (12, "c"))}
    ports = {name: free_port(ip) for name, ip in ips.items()}
    targets = [f"{ips[n]}:{ports[n]}" for n in "abc"]
    servers = {}

    def up(name, kind):
        servers[name] = PacsServer(kind, ips[name], ports[name])
        servers[name].start()

    def down(name):
        servers.pop(name).stop()

    try:
        up("a", "open-archive")
        up("b", "echo-only")
        first = scan(repo, targets)  # c is not there yet
        assert kinds(first) == [("new", ips["a"]), ("new", ips["b"])]
        assert first.previous is None and (first.changes.new, first.changes.fixed) == (2, 0)

        down("a")
        down("b")
        # One miss fixes nothing (the two-miss rule; before it, this scan fixed both).
        second = scan(repo, targets, seed=2)
        assert kinds(second) == [("missed", ips["a"]), ("missed", ips["b"])]
        assert second.previous["id"] == first.scan_id and second.changes.fixed == 0

        up("b", "echo-only")
        up("c", "find-empty")
        no_wait = RescanPolicy(confirm_fixed_after=timedelta(0))  # any later second miss confirms
        third = scan(repo, targets, seed=3, policy=no_wait)  # a missed again: fixed; b back
        assert kinds(third) == [("fixed", ips["a"]), ("new", ips["c"]), ("seen-again", ips["b"])]
        assert (third.changes.new, third.changes.fixed, third.changes.reopened) == (1, 1, 0)

        up("a", "open-archive")
        fourth = scan(repo, targets, seed=4)
        assert kinds(fourth) == [("reopened", ips["a"])]
    finally:
        for name in list(servers):
            down(name)

    findings = {f["ip"]: f for f in repo.findings()}
    assert findings[ips["a"]]["status"] == "reopened" and findings[ips["a"]]["severity"] == "critical"
    assert findings[ips["a"]]["reopen_count"] == 1
    assert findings[ips["b"]]["status"] == "open" and findings[ips["b"]]["missed_since"] is None
    assert findings[ips["b"]]["first_seen"] < findings[ips["b"]]["last_seen"]
    assert findings[ips["c"]]["status"] == "open" and findings[ips["c"]]["severity"] == "high"
    # Counts reached the database; no identifier did (the lab's patients have names and IDs).
    assert findings[ips["a"]]["studies"] == 12 and findings[ips["a"]]["patients"] == 5
    history = repo.observations(ip=ips["b"], port=ports["b"])
    assert [o["status"] for o in history] == ["success", "connection-refused", "success", "success"]
    if repo.backend == "sqlite":  # the synthetic patients the lab served are nowhere in the file
        from pathlib import Path

        from pacswatch.lab.data import planted_strings

        path = Path(repo.engine.url.database)
        data = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        planted = planted_strings()
        assert planted and not [s for s in planted if s.encode() in data]


def test_opted_out_and_out_of_scope_endpoints_are_never_contacted(repo, watched):
    opted, outside, allowed = watched(f"{BASE}.20"), watched(f"{BASE}.21"), watched(f"{BASE}.22")
    repo.add_optout(f"{BASE}.20", "admin@hospital.example", note="asked by phone")
    repo.add_scope(f"{BASE}.22/32", "the only authorised host")
    repo.add_scope(f"{BASE}.20/32")
    outcome = scan(repo, [opted.address, outside.address, allowed.address])
    assert opted.connections == 0 and outside.connections == 0
    assert allowed.connections >= 1  # the scan itself works
    counts = repo.scan(outcome.scan_id)["counts"]
    assert counts.get("blocked") == 2 and outcome.status == "finished"


def test_blocked_records_say_why(repo, watched, tmp_path):
    opted = watched(f"{BASE}.23")
    repo.add_optout(f"{BASE}.23", "admin@hospital.example")
    parameters = {"targets": [opted.address], "ports": [], "seed": 1}
    plan = build_plan(repo, parameters)
    job = make_job()
    seen = []
    job.on_record = lambda index, record: seen.append(record)
    execute(repo, start_scan(repo, plan, parameters), plan, job)
    (record,) = seen
    assert record.status == "blocked" and "opt-out list" in record.detail and "admin@" not in record.detail
    assert opted.connections == 0


def test_run_loop_rescans_what_is_due_and_resumes_unfinished(repo):
    ip, port = f"{BASE}.30", free_port(f"{BASE}.30")
    server = PacsServer("open-archive", ip, port)
    server.start()
    try:
        scan(repo, [f"{ip}:{port}"])
        now = datetime.now(timezone.utc)
        clock = {"now": now}
        loop = RunLoop(repo, make_job=make_job, build_plan=lambda p: build_plan(repo, p), parameters={},
                       policy=RescanPolicy(confirm_fixed_after=timedelta(0)), clock=lambda: clock["now"],
                       log=lambda _: None)
        assert loop.cycle() is None  # critical: due in 12 hours, not yet
        clock["now"] = now + timedelta(hours=13)
        outcome = loop.cycle()
        assert outcome is not None and outcome.status == "finished" and outcome.events == []
        assert repo.scan(outcome.scan_id)["kind"] == "rescan"
    finally:
        server.stop()
    clock["now"] = now + timedelta(days=2)
    outcome = loop.cycle()
    # Two-miss rule (one rescan fixed it before): the miss asks for a confirmation rescan at
    # once (confirm_fixed_after 0), which fixes it.
    assert [e["kind"] for e in outcome.events] == ["missed"]
    outcome = loop.cycle()
    assert [e["kind"] for e in outcome.events] == ["fixed"]
    assert loop.cycle() is None  # next look in a week

    # A rescan left half done by a stopped `run` is finished first, without redoing its done part.
    parameters = {"targets": [f"{BASE}.31:{free_port(f'{BASE}.31')}", f"{BASE}.32:{free_port(f'{BASE}.32')}"],
                  "ports": [], "seed": 5}
    plan = build_plan(repo, parameters)
    scan_id = start_scan(repo, plan, parameters, kind="rescan")
    repo.finish_scan(scan_id, "interrupted")
    first = plan[0]
    from pacswatch.findings.work import IntervalSet
    from pacswatch.record import Record

    work = IntervalSet([(0, 0)])
    repo.ingest(scan_id, [(0, Record(ip=first.ip, port=first.port, status="connection-refused"))], work=work)
    resumed = loop.resume_unfinished()
    assert resumed.scan_id == scan_id and resumed.status == "finished"
    assert repo.scan(scan_id)["counts"] == {"connection-refused": 2}


def test_a_rescan_resumed_by_a_later_run_probes_as_it_started(repo):
    """`run --no-find` must not finish a rescan that an earlier `run` started with C-FIND:
    one scan would then hold records of two kinds of probe."""
    ip, port = f"{BASE}.33", free_port(f"{BASE}.33")
    server = PacsServer("open-archive", ip, port)
    server.start()
    try:
        started_with = {"targets": [f"{ip}:{port}"], "ports": [], "seed": 9, "probe": {"find": True}}
        plan = build_plan(repo, started_with)
        scan_id = start_scan(repo, plan, started_with, kind="rescan")
        repo.finish_scan(scan_id, "interrupted")  # stopped before probing anything
        asked = []

        def make(parameters):
            asked.append(parameters)
            return make_job(parameters)

        loop = RunLoop(repo, make_job=make, build_plan=lambda p: build_plan(repo, p),
                       parameters={"probe": {"find": False}}, log=lambda _: None)
        outcome = loop.resume_unfinished()
    finally:
        server.stop()
    assert outcome.scan_id == scan_id and outcome.status == "finished"
    assert [p["probe"] for p in asked] == [{"find": True}]
    assert [(a.ip, a.port) for a in outcome.kept] == [(ip, port)]
    (row,) = repo.observations(scan_id=scan_id)
    find = row["record"]["dicom"]["find"]
    assert find["allowed"] is True and find["studies"] > 0, find
