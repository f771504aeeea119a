"""A scan that the database remembers: started, stored as it runs, resumable after a crash.

The plan is a seeded permutation of targets x ports (ScanPlan); the database keeps the scan's
parameters and the plan's fingerprint, and, per batch of records, the records themselves and
the plan indexes they complete, in one transaction. `scan --resume ID` rebuilds the same plan
from the stored parameters, checks the fingerprint, and probes only the indexes not completed.
What a crash (even SIGKILL) can cost is the work in flight: the probes running and the records
not yet committed (at most one batch, flushed every `flush_interval` seconds).

Records reach the database through a queue and one writer thread, so the event loop never
waits on a disk or a PostgreSQL round trip, and there is exactly one writer per scan.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pacswatch.findings.lifecycle import ChangeSummary, summarize
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.errors import ScanNotResumable, StoreError
from pacswatch.store.repository import Repository, Row
from pacswatch.targets import Endpoint, ScanPlan, TargetSet

if TYPE_CHECKING:  # the scan package is imported when a scan runs, not by every command
    from pacswatch.scan.runner import ScanStats

HEARTBEAT = 5.0  # seconds between liveness updates of a running scan (at most; each batch stored is one too)
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


class StoreSink:
    """The one writer of a scan: `put(index, record)` from the event loop, batches committed by a
    thread with the completed-index set, so a resume never skips an endpoint whose record is lost.

    `put` only appends to a list and the writer is woken once per batch: a queue and a wake-up
    per record cost the event loop more than probing an endpoint.

    Records wait for `release()` before the writer may take them: the job calls it once its
    output file is flushed, so an endpoint the database counts as done is always in the output
    too, even when the scan is killed (the resumed scan does not probe it again)."""

    def __init__(self, repo: Repository, scan_id: int, done: IntervalSet, *, policy: RescanPolicy,
                 keep_all: bool = False, batch: int = 256, flush_interval: float = 0.25) -> None:
        self.repo, self.scan_id, self.done = repo, scan_id, done
        self.policy, self.keep_all = policy, keep_all
        self.batch, self.flush_interval = batch, flush_interval
        self.error: BaseException | None = None
        self.written = 0
        self._staged: list[tuple[int | None, Record]] = []
        self._pending: list[tuple[int | None, Record]] = []  # released; guarded by _lock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"pacswatch-store-{scan_id}", daemon=True)

    def start(self) -> StoreSink:
        self._thread.start()
        return self

    def put(self, index: int | None, record: Record) -> None:
        if self.error is not None:
            raise StoreError(f"the database stopped taking records: {self.error}")
        self._staged.append((index, record))

    def release(self) -> None:
        """Everything put so far may be written (the output showing it is flushed)."""
        if self._staged:
            staged, self._staged = self._staged, []
            with self._lock:
                self._pending.extend(staged)
                full = len(self._pending) >= self.batch
            if full:
                self._wake.set()

    def close(self) -> None:
        """Write what was released and stop; raises the writer's error, if it had one. Records
        put but never released are dropped: the output showing them was never flushed (a full
        disk, a closed pipe), so they are not done, and a resumed scan probes them again."""
        self._staged = []
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self.error is not None:
            raise StoreError(f"records could not be stored: {self.error}") from self.error

    def _run(self) -> None:
        quiet_since = time.monotonic()
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            closing = self._closing  # read before taking the batch: nothing is put after close()
            with self._lock:
                items, self._pending = self._pending, []
            try:
                if items:
                    for start in range(0, len(items), self.batch):  # one transaction per batch
                        self._write(items[start : start + self.batch])
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= HEARTBEAT:
                    self.repo.heartbeat(self.scan_id)  # alive, if quiet (tarpits take a while)
                    quiet_since = time.monotonic()
            except BaseException as exc:  # kept for put()/close(): the scan stops, loudly
                self.error = exc
                return
            if closing:
                with self._lock:
                    left = bool(self._pending)
                if left:  # released while the last batch was written: write those too
                    continue
                return

    def _write(self, items: list[tuple[int | None, Record]]) -> None:
        for index, _ in items:
            if index is not None:
                self.done.add(index)
        self.repo.ingest(self.scan_id, items, work=self.done, policy=self.policy, keep_all=self.keep_all)
        self.written += len(items)


@dataclass
class ScanOutcome:
    scan_id: int
    status: str  # finished | interrupted
    stats: ScanStats
    kept: list[Record]
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
    now = now or datetime.now(UTC)
    if scan["status"] == "running" and scan["host"] == socket.gethostname() and scan["pid"] != os.getpid() \
            and _alive(scan["pid"]) and now - scan["updated_at"] < STALE:
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
    if scan.get("host") == (host or socket.gethostname()) and not _alive(scan.get("pid")):
        return "stalled"
    return "running"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_same_plan(scan: Row, plan: ScanPlan) -> None:
    if plan.fingerprint() != scan["plan_fingerprint"] or plan.size != scan["plan_size"]:
        raise ScanNotResumable(
            f"the targets of scan {scan['id']} are not what they were (a target or import file edited, or a "
            "name that now resolves elsewhere): the same seed would not visit the same endpoints; start a new scan")


def execute(repo: Repository, scan_id: int, plan: ScanPlan, job, *, policy: RescanPolicy | None = None,
            keep_all: bool = False, batch: int = 256, flush_interval: float = 0.25,
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
