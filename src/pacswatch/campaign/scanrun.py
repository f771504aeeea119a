"""A scan that the database remembers: started, stored as it runs, resumable after a crash.

The plan is a seeded permutation of targets x ports (ScanPlan); the database keeps the scan's
parameters and the plan's fingerprint, and, per batch of records, the records themselves and
the plan indexes they complete, in one transaction. `scan --resume ID` rebuilds the same plan
from the stored parameters, checks the fingerprint, and probes only the indexes not completed.
What a crash (even SIGKILL) can cost is the work in flight: the probes running and the records
not yet committed (at most one batch, flushed every `flush_interval` seconds).

Records reach the database through store/sink.py's StoreSink: one writer thread per scan, so
the event loop never waits on a disk or a PostgreSQL round trip.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pacswatch.findings.lifecycle import ChangeSummary, summarize
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.errors import ScanNotResumable
from pacswatch.store.repository import Repository, Row
from pacswatch.store.sink import HEARTBEAT, StoreSink
from pacswatch.targets import Endpoint, ScanPlan, TargetSet

if TYPE_CHECKING:  # the scan package is imported when a scan runs, not by every command
    from pacswatch.scan.answered import Answering
    from pacswatch.scan.runner import ScanStats

# A "running" scan without a heartbeat for three intervals is dead: `scans` shows it as stalled.
STALE = timedelta(seconds=3 * HEARTBEAT)


def targets_key(plan: ScanPlan) -> str:
    """Digest of what was scanned regardless of order (no seed): "the same targets"."""
    h = hashlib.sha256(b"pacswatch-targets-v1\n")
    h.update(f"ports={','.join(map(str, plan.ports))}\n".encode())
    for first, last in plan.targets.ranges():
        h.update(f"range={first}-{last}\n".encode())
    for text in sorted(str(ep) for ep in plan.targets.pinned):
        h.update(f"pinned={text}\n".encode())
    return h.hexdigest()


def merge_targets(*sets: TargetSet) -> TargetSet:
    """One TargetSet with every range, pinned endpoint and host name of `sets`."""
    spans: list[tuple[int, int, int]] = []
    pinned: list[Endpoint] = []
    names: dict[tuple[int, int], list[str]] = {}
    for targets in sets:
        spans.extend((first.version, int(first), int(last)) for first, last in targets.ranges())
        pinned.extend(targets.pinned)
        for key, values in targets.hostnames.items():
            names.setdefault(key, []).extend(values)
    return TargetSet(spans, pinned, names)


def targets_from_parameters(parameters: dict) -> TargetSet:
    """The targets and imported endpoints a scan's parameters name (names resolved here)."""
    from pacswatch.targets import parse_targets
    from pacswatch.targets.imports import imported_targets

    ports = tuple(parameters.get("ports") or ())
    parts = []
    if parameters.get("targets"):
        parts.append(parse_targets(parameters["targets"], resolve=not parameters.get("no_resolve")))
    if parameters.get("masscan") or parameters.get("zmap"):
        parts.append(imported_targets(parameters.get("masscan") or (), parameters.get("zmap") or (),
                                      ports[0] if len(ports) == 1 else None))
    return parts[0] if len(parts) == 1 else merge_targets(*parts)


def plan_from_parameters(parameters: dict, blocklist, scope, targets: TargetSet | None = None) -> ScanPlan:
    """The plan a scan's stored parameters describe (targets, imports, ports, seed), under the
    blocklist and scope given: the same call starts a scan and resumes it."""
    if targets is None:
        targets = targets_from_parameters(parameters)
    return ScanPlan(targets, tuple(parameters.get("ports") or ()), int(parameters["seed"]), blocklist, scope)


class RemainingPlan:
    """The endpoints of `plan` not in `done`, in plan order, with the plan's indexes."""

    def __init__(self, plan: ScanPlan, done: IntervalSet) -> None:
        self.plan = plan
        self.done = done
        self.size = plan.size - len(done)

    def __iter__(self) -> Iterator:
        done = self.done
        for endpoint in self.plan.iter_from(done.first_missing()):
            if endpoint.index not in done:
                yield endpoint


@dataclass
class ScanOutcome:
    scan_id: int
    status: str  # finished | interrupted
    stats: ScanStats
    kept: Sequence[Answering]  # the endpoints that answered (scan/answered.py)
    changes: ChangeSummary
    events: list[Row]
    previous: Row | None
    remaining: int = 0
    extra: dict = field(default_factory=dict)


def start_scan(repo: Repository, plan: ScanPlan, parameters: dict, *, kind: str = "scan",
               command: str | None = None) -> int:
    return repo.create_scan(kind=kind, parameters=parameters, seed=plan.seed, fingerprint=plan.fingerprint(),
                            targets_key=targets_key(plan), plan_size=plan.size, command=command)


def check_resumable(repo: Repository, scan_id: int, *, now: datetime | None = None) -> Row:
    """The scan row if `scan_id` may be resumed by this process; ScanNotResumable otherwise."""
    scan = repo.scan(scan_id)
    if scan is None:
        raise ScanNotResumable(f"there is no scan {scan_id} in this database")
    if scan["status"] == "finished":
        raise ScanNotResumable(f"scan {scan_id} is finished: nothing to resume (start a new scan)")
    parameters = scan.get("parameters")
    if not isinstance(parameters, dict) or "seed" not in parameters:
        # A scan row written by another tool (a benchmark's, an import) or damaged by hand: the
        # plan cannot be rebuilt, and a KeyError's traceback would say nothing about why.
        raise ScanNotResumable(f"scan {scan_id} has no stored plan (targets, ports and seed), "
                               "so it cannot be resumed: start a new scan")
    now = now or datetime.now(UTC)
    if scan["status"] == "running" and scan["host"] == socket.gethostname() and scan["pid"] != os.getpid() \
            and process_alive(scan["pid"]) and now - scan["updated_at"] < STALE:
        raise ScanNotResumable(f"scan {scan_id} is still running (pid {scan['pid']}); stop it first")
    return scan


def shown_status(scan: Row, *, now: datetime | None = None, host: str | None = None) -> str:
    """A scan's status as a person should read it: `stalled` for one marked running whose writer
    is gone (no heartbeat for STALE, or, on this machine, its process no longer exists), since
    only a process that is alive updates the row. `scan --resume ID` continues a stalled scan."""
    if scan["status"] != "running":
        return scan["status"]
    now = now or datetime.now(UTC)
    if now - scan["updated_at"] >= STALE:
        return "stalled"
    if scan.get("host") == (host or socket.gethostname()) and not process_alive(scan.get("pid")):
        return "stalled"
    return "running"


def process_alive(pid: int | None) -> bool:
    """Whether process `pid` of this machine still runs. A zombie counts as ended: a process
    killed with its parent stays one until PID 1 reaps it, which in a container can take a
    while, and it writes nothing more (found by hand: `scan --resume` right after a kill -9 of a
    `--workers` scan's process group said "still running")."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's: it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:
        return True  # no /proc (not Linux): os.kill's answer stands


# A local scan's records per transaction, and the longest a released record waits for one. Each
# commit writes every index page its batch changed (a scan visits endpoints in random order, so
# nearly every leaf of the (ip, port) indexes) and each batch reads, counts and updates the scan
# once: 1,024 records at least once a second, against StoreSink's 256 every quarter second, took
# the store thread of a 10,000-endpoint scan from 0.68-0.71 to 0.56-0.58 CPU s
# (bench/internet_mix.py). A kill -9 loses at most that second, probed again on resume.
SCAN_BATCH = 1024
SCAN_FLUSH_INTERVAL = 1.0


def check_same_plan(scan: Row, plan: ScanPlan) -> None:
    if plan.fingerprint() != scan["plan_fingerprint"] or plan.size != scan["plan_size"]:
        raise ScanNotResumable(
            f"the targets of scan {scan['id']} are not what they were (a target or import file edited, or a "
            "name that now resolves elsewhere): the same seed would not visit the same endpoints; start a new scan")


def execute(repo: Repository, scan_id: int, plan: ScanPlan, job, *, policy: RescanPolicy | None = None,
            keep_all: bool = False, batch: int = SCAN_BATCH, flush_interval: float = SCAN_FLUSH_INTERVAL,
            run: Callable | None = None) -> ScanOutcome:
    """Run `job` (a ScanJob) over what `plan` has left for `scan_id`, storing as it goes."""
    policy = policy or RescanPolicy()
    done = repo.completed(scan_id)
    remaining = RemainingPlan(plan, done)
    job.plan = remaining
    # The plan checks each endpoint as the scan takes it; the same list is asked again right
    # before each connect, so an opt-out added mid-scan also stops probes already under way.
    blocklist = getattr(plan, "blocklist", None)
    job.refuse = blocklist.reason_for if blocklist is not None else None
    job.optouts = getattr(blocklist, "optouts", None)  # a live list: --workers processes are sent it
    sink = StoreSink(repo, scan_id, done, policy=policy, keep_all=keep_all, batch=batch,
                     flush_interval=flush_interval)
    downstream = job.on_record

    def on_record(index: int, record: Record) -> None:
        sink.put(index, record)
        if downstream is not None:
            downstream(index, record)

    job.on_record = on_record
    job.on_flush = sink.release
    repo.claim_scan(scan_id)
    sink.start()
    try:
        stats, kept = (run or job.run)()
    except BaseException:
        try:
            sink.close()
        finally:
            repo.finish_scan(scan_id, "interrupted")
        raise
    try:
        sink.close()
    except BaseException:  # the last records could not be stored: resumable, not finished
        repo.finish_scan(scan_id, "interrupted")
        raise
    status = "finished" if len(done) >= plan.size else "interrupted"
    repo.finish_scan(scan_id, status)
    events = repo.events(scan_id=scan_id)
    changes = summarize((e["kind"], e["old_severity"], e["new_severity"]) for e in events)
    return ScanOutcome(scan_id, status, stats, kept, changes, events, repo.previous_scan(scan_id),
                       remaining=plan.size - len(done))
