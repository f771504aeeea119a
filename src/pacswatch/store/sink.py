"""The one writer of a scan's records: batches committed by a thread, with the completed plan
indexes in the same transaction (Repository.ingest), so that the event loop never waits on a
disk or a PostgreSQL round trip. A local scan (campaign/scanrun.py) and a distributed scan's
shard (distributed/tasks.py) store through it alike.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.errors import StoreError
from pacswatch.store.repository import Repository, ShardSpan

HEARTBEAT = 5.0  # seconds between liveness updates of a running scan (at most; each batch stored is one too)
# Records per transaction, and the longest a released record waits for one, unless the caller
# says otherwise: a distributed shard's worker (distributed/tasks.py) keeps these; a local scan
# commits less often (campaign/scanrun.py, SCAN_BATCH).
BATCH = 256
FLUSH_INTERVAL = 0.25
# Set (to anything) to print, at the end of a scan, the CPU seconds of the writer thread and of the
# thread that closed it (the event loop's): where a scan's CPU goes, for bench/ and issue 16.
THREAD_CPU_ENV = "PACSWATCH_THREAD_CPU"


def _waits() -> str:
    """How often this thread gave up the CPU waiting (for the GIL, mostly: a thread that waits
    for it blocks), and how often it was made to (Linux; empty elsewhere)."""
    try:
        with open("/proc/thread-self/status") as status:
            counts = dict(line.split(":\t") for line in status.read().splitlines() if "ctxt_switches" in line)
    except OSError:
        return ""
    return f"{counts['voluntary_ctxt_switches']} voluntary, {counts['nonvoluntary_ctxt_switches']} forced"


class StoreSink:
    """The one writer of a scan: `put(index, record)` from the event loop, batches committed by a
    thread with the completed-index set, so a resume never skips an endpoint whose record is lost.

    `put` only appends to a list and the writer is woken once per batch: a queue and a wake-up
    per record cost the event loop more than probing an endpoint.

    Records wait for `release()` before the writer may take them: the job calls it once its
    output file is flushed, so an endpoint the database counts as done is always in the output
    too, even when the scan is killed (the resumed scan does not probe it again)."""

    def __init__(self, repo: Repository, scan_id: int, done: IntervalSet, *, policy: RescanPolicy,
                 keep_all: bool = False, batch: int = BATCH, flush_interval: float = FLUSH_INTERVAL,
                 shard: ShardSpan | None = None, vantage: str | None = None) -> None:
        self.repo, self.scan_id, self.done = repo, scan_id, done
        self.policy, self.keep_all = policy, keep_all
        # A distributed scan's shard: the database keeps its completed indexes (Repository.ingest).
        self.shard, self.vantage = shard, vantage
        self.batch, self.flush_interval = batch, flush_interval
        self.error: BaseException | None = None
        self.written = 0
        self._staged: list[tuple[int | None, Record]] = []
        self._pending: list[tuple[int | None, Record]] = []  # released; guarded by _lock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"pacswatch-store-{scan_id}", daemon=True)
        self.thread_cpu_s = 0.0  # the writer thread's CPU, known once it stopped
        self._thread_waits = ""

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
        if os.environ.get(THREAD_CPU_ENV):
            print(f"pacswatch: thread CPU s: store writer {self.thread_cpu_s:.3f} ({self._thread_waits} waits), "
                  f"{threading.current_thread().name} {time.thread_time():.3f} ({_waits()} waits), "
                  f"process {time.process_time():.3f}", file=sys.stderr)
        if self.error is not None:
            raise StoreError(f"records could not be stored: {self.error}") from self.error

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.thread_cpu_s, self._thread_waits = time.thread_time(), _waits()

    def _loop(self) -> None:
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
        if self.shard is None:
            self.repo.ingest(self.scan_id, items, work=self.done, policy=self.policy, keep_all=self.keep_all)
        else:  # a shard's completed indexes are the database's, not self.done
            self.repo.ingest(self.scan_id, items, policy=self.policy, keep_all=self.keep_all, shard=self.shard,
                             vantage=self.vantage)
        self.written += len(items)
