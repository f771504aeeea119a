"""The shard task: what a worker does with one shard of a distributed scan.

It rebuilds the scan's plan from the stored parameters and seed (with today's opt-out list and
scope, as a resume does), probes the shard's indexes not yet stored with the same ScanJob and
asyncio runner as a local scan, and stores through the same StoreSink and ingest, with the
shard named so that indexes already stored are skipped (a redelivered shard costs probes,
never a second observation). The shard's rate and concurrency are the scan's, shared out among
the live workers' task slots on its queue (shards.share).

A shard runs under a lease in the database (store/shards.py): renewed while it runs, so that a
second delivery (Redis gives an unacknowledged shard to another worker once its visibility
timeout passes, however alive the first worker is) does not probe it again. That delivery
waits while the lease is fresh, then returns (the shard ended) or takes the shard over from its
stored progress (the lease went stale: its owner died). A SIGKILLed worker's shard therefore
moves on within the visibility timeout plus LEASE_STALE, or sooner, about LEASE_STALE, while
a scan command follows the scan (follow.py sends a shard with a stale lease again).

The plan builder and the owners' lookup live in the campaign, above this package: the command
line passes them in (WorkerConfig.plan_for, .after_scan), as it passes the scope check to notify.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pacswatch.distributed.app import SHARD_TASK
from pacswatch.distributed.shards import share
from pacswatch.findings.schedule import POLICY_SETTING, RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.repository import Repository, ShardSpan
from pacswatch.store.shards import BY_WORKER, LEASE_RENEW, ShardStore
from pacswatch.store.sink import StoreSink

log = logging.getLogger("pacswatch.worker")
MAX_TRIES = 3  # starts of one shard without an end before it is failed: it kills its workers
RETRY_AFTER = 5.0  # seconds before a shard that raised is sent again
LEASE_WAIT = 1.0  # seconds between looks at another delivery's lease


class ShardFailed(Exception):
    """The shard cannot run anywhere (its plan changed): failed at once, with this reason."""


@dataclass
class WorkerConfig:
    database: str | None
    vantage: str | None
    # (repository, stored scan row) -> the scan's plan under today's opt-out list and scope.
    plan_for: Callable[[Repository, dict], Any]
    # (repository, scan id): the owners of what the scan found looked up, by the worker that
    # ends a scan the command does not follow (scan_inputs.attribute 'worker').
    after_scan: Callable[[Repository, int], None] | None = None
    max_tries: int = MAX_TRIES
    _repo: Repository | None = field(default=None, repr=False)
    _pid: int = field(default=0, repr=False)

    def repository(self) -> Repository:
        """This process's connection pool: a pool opened before a fork is not the child's to use."""
        if self._repo is None or self._pid != os.getpid():
            self._repo, self._pid = Repository.open(self.database), os.getpid()
        return self._repo


class ShardPlan:
    """The endpoints of plan indexes [first, last] not in `done`, in plan order."""

    def __init__(self, plan, first: int, last: int, done: IntervalSet) -> None:
        self.plan, self.first, self.last, self.done = plan, first, last, done
        self.size = last - first + 1 - len(done)

    def __iter__(self) -> Iterator:
        done, last = self.done, self.last
        for endpoint in self.plan.iter_from(self.first):
            if endpoint.index > last:
                return
            if endpoint.index not in done:
                yield endpoint


def register(app, config: WorkerConfig):
    """The shard task on `app`, running with `config`."""

    @app.task(name=SHARD_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def shard(self, shard_id: int) -> str:
        worker = self.request.hostname or "unknown"
        try:
            return run_shard(config, shard_id, worker)
        except ShardInterrupted:
            # Stopped mid-way (the worker's process was told to stop): give the shard back.
            raise self.retry(countdown=RETRY_AFTER) from None
        except Exception as exc:  # noqa: BLE001 - a database outage, our own bug: tried again, then failed
            log.exception("shard %s failed on %s", shard_id, worker)
            if _give_back(config, shard_id, exc):
                raise self.retry(countdown=RETRY_AFTER) from None
            return "failed"

    return shard


class ShardInterrupted(Exception):
    pass


def run_shard(config: WorkerConfig, shard_id: int, worker: str) -> str:
    """Probe and store shard `shard_id`; its state afterwards (done, failed, or already done)."""
    repo = config.repository()
    store = ShardStore(repo.engine)
    owner = f"{worker}/{os.getpid()}"  # this pool process: another of the same worker is another owner
    verdict, row = store.take(shard_id, worker, config.max_tries, owner=owner)
    while verdict == "leased":  # a second delivery while it runs elsewhere: wait, then return or take over
        time.sleep(LEASE_WAIT)
        verdict, row = store.take(shard_id, worker, config.max_tries, owner=owner)
    if row is None:
        return verdict  # no such shard (its scan was deleted): nothing to do
    if verdict == "run":
        try:
            with _Lease(store, shard_id, owner):
                complete = _probe(config, repo, row)
        except ShardFailed as exc:
            store.finish(shard_id, "failed", str(exc))
            verdict = "failed"
        else:
            if not complete:
                store.finish(shard_id, "queued")
                raise ShardInterrupted()
            store.finish(shard_id, "done")
            store.task_done(worker)
            verdict = "done"
    finish_scan_if_complete(repo, store, row["scan_id"], config.after_scan)
    return verdict


class _Lease:
    """Renews a shard's lease every LEASE_RENEW seconds while its body runs (a thread: the
    probing keeps the event loop busy, and a quiet shard of tarpits stores nothing for long)."""

    def __init__(self, store: ShardStore, shard_id: int, owner: str) -> None:
        self.store, self.shard_id, self.owner = store, shard_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pacswatch-lease-{shard_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(LEASE_RENEW):
            try:
                if not self.store.renew(self.shard_id, self.owner):
                    log.warning("shard %s: its lease was taken over (this worker was silent too long)",
                                self.shard_id)
            except Exception:  # noqa: BLE001 - the database away for a moment: the next renewal tries again
                log.exception("shard %s: lease renewal failed", self.shard_id)

    def __enter__(self) -> "_Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _probe(config: WorkerConfig, repo: Repository, row: dict) -> bool:
    """Run the shard; True when every index of it is stored."""
    from pacswatch.probes.registry import ProbeSelector, probe_options, probe_settings
    from pacswatch.scan.job import ScanJob
    from rich.console import Console

    scan = repo.scan(row["scan_id"])
    if scan is None:
        raise ShardFailed(f"scan {row['scan_id']} is not in the database")
    parameters = scan["parameters"]
    plan = config.plan_for(repo, scan)
    if plan.fingerprint() != scan["plan_fingerprint"] or plan.size != scan["plan_size"]:
        raise ShardFailed("the scan's plan rebuilt on this worker is not the one it started with: the seed "
                          "would not visit the same endpoints")
    span = ShardSpan(row["id"], int(row["first_index"]), int(row["last_index"]))
    todo = ShardPlan(plan, span.first, span.last, repo.shard_done(row["scan_id"], span))
    if todo.size == 0:
        return True
    rate, concurrency = share(float(parameters["rate"]), int(parameters["concurrency"]),
                              ShardStore(repo.engine).live_slots(row["queue"]))
    options = probe_options(probe_settings(parameters["probe"]))
    selector = ProbeSelector.for_web_ports(parameters.get("web_ports"))
    job = ScanJob(plan=todo, probe_for=selector.probe_for, options=options, rate=rate, concurrency=concurrency,
                  output=None, show_progress=False, show_summary=False, stderr=Console(stderr=True, quiet=True))
    job.refuse = plan.blocklist.reason_for  # an opt-out added mid-shard stops probes under way too
    # The policy the scan command stored with the scan (its --confirm-fixed-after included); a
    # scan stored before that was kept: the installation's.
    inputs = ShardStore(repo.engine).inputs(row["scan_id"])
    policy = RescanPolicy.from_json(inputs["policy"] if inputs else repo.setting(POLICY_SETTING))
    sink = StoreSink(repo, row["scan_id"], IntervalSet(), policy=policy, keep_all=bool(parameters.get("keep_all")),
                     shard=span, vantage=config.vantage)

    def on_record(index: int, record: Record) -> None:
        sink.put(index, record)

    job.on_record = on_record
    job.on_flush = sink.release
    sink.start()
    try:
        stats, _ = job.run()
    finally:
        sink.close()
    return not stats.interrupted and len(repo.shard_done(row["scan_id"], span)) == span.last - span.first + 1


def _give_back(config: WorkerConfig, shard_id: int, exc: BaseException) -> bool:
    """After an error: the shard queued again (True: send it again) or, out of tries, failed."""
    try:
        store = ShardStore(config.repository().engine)
        row = store.get(shard_id)
        if row is None:
            return False
        if row["tries"] >= config.max_tries:
            store.finish(shard_id, "failed", f"{type(exc).__name__}: {exc}"[:2000])
            finish_scan_if_complete(config.repository(), store, row["scan_id"], config.after_scan)
            return False
        store.finish(shard_id, "queued", f"{type(exc).__name__}: {exc}"[:2000])
    except Exception:  # noqa: BLE001 - the database is away too: the message is sent again anyway
        log.exception("could not record the failure of shard %s", shard_id)
    return True


def finish_scan_if_complete(repo: Repository, store: ShardStore, scan_id: int,
                            after_scan: Callable[[Repository, int], None] | None = None) -> str | None:
    """The scan is finished once every shard is done; interrupted once every shard has ended
    with one failed (`scan --resume ID` sends those again). The one caller that ends it (workers
    and the following command may race: ShardStore.end_scan decides) looks up its owners when
    the scan says a worker should (--detach). The status it set, or None."""
    states = store.states([scan_id])
    if states.get("queued") or states.get("running"):
        return None
    status = "interrupted" if states.get("failed") else "finished"
    if not store.end_scan(scan_id, status):
        return None
    inputs = store.inputs(scan_id)
    if status == "finished" and after_scan is not None and inputs is not None and inputs["attribute"] == BY_WORKER:
        try:
            after_scan(repo, scan_id)
        except Exception:  # noqa: BLE001 - the scan is stored; `pacswatch attribute` can do it later
            log.exception("attribution after scan %s failed (run: pacswatch attribute)", scan_id)
    return status
