"""The scan command's side of a distributed scan: shards created and sent, then progress
followed from the database (the workers write it there), with a local scan's progress bar and
summary.

The broker only carries shard ids. If it restarts (seen down, or answering with a new run id)
it may have forgotten its queue and the messages of the shards under way (Redis without
persistence), so every shard queued in the database is sent again once it answers. Sending
a shard twice is harmless: the task does nothing for a shard already done, waits on the lease
of one running elsewhere, and takes over one whose worker died with it (tasks.py). For the same
reason a shard whose message is likely gone is sent again (orphaned_shards): running with a
stale lease, its worker dead, where Redis would give its message to another worker only after
the visibility timeout (30 minutes by default), or never if it restarted meanwhile; or queued
while idle workers wait, its message lost with a worker killed as it received it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select, update

from pacswatch.distributed.app import SHARD_TASK, check_broker, queue_for
from pacswatch.distributed.shards import DEFAULT_SHARD_SIZE, cut
from pacswatch.distributed.tasks import finish_scan_if_complete
from pacswatch.record import Record
from pacswatch.store.repository import Repository, Row, now_utc
from pacswatch.store.shards import LEASE_STALE, UNFINISHED, ShardStore, age, lease_stale
from pacswatch.store.tables import observations, scans

POLL = 0.5  # seconds between looks at the database
BROKER_CHECK = 2.0  # seconds between looks at the broker (and at the live workers)


def submit(app, repo: Repository, scan_id: int, plan_size: int, *, vantage: str | None, inputs: dict,
           shard_size: int = DEFAULT_SHARD_SIZE) -> int:
    """Store what the workers rebuild scan `scan_id` from (`inputs`, campaign/planinputs.py),
    cut it into shards, record them, send them; how many."""
    store = ShardStore(repo.engine)
    store.save_inputs(scan_id, inputs)
    queue = queue_for(vantage)
    ids = store.create(scan_id, cut(plan_size, shard_size), queue=queue, vantage=vantage)
    with repo.engine.begin() as conn:  # run by the workers: no local process to watch for
        conn.execute(update(scans).where(scans.c.id == scan_id).values(host="celery", pid=None))
    send(app, [{"id": i, "queue": queue} for i in ids])
    return len(ids)


def send(app, shards: Iterable[dict]) -> int:
    count = 0
    with app.producer_or_acquire() as producer:
        for row in shards:
            app.send_task(SHARD_TASK, args=[int(row["id"])], queue=row["queue"], producer=producer)
            count += 1
    return count


def resend(app, repo: Repository, scan_ids: list[int]) -> int:
    """`scan --resume`: every shard of these scans not done, sent again with its tries reset."""
    rows = ShardStore(repo.engine).requeue(scan_ids, reset_tries=True)
    with repo.engine.begin() as conn:
        conn.execute(update(scans).where(scans.c.id.in_(scan_ids)).values(status="running", finished_at=None,
                                                                           host="celery", pid=None))
    return send(app, rows)


@dataclass
class Followed:
    """What the followed scans came to, shaped like a local scan's ScanStats for the summary."""

    total: int = 0
    done: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_severity: Counter = field(default_factory=Counter)
    interrupted: bool = False
    elapsed: float = 0.0
    kept: list[Record] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # failed shards
    statuses: dict[int, str] = field(default_factory=dict)  # scan id -> status


def follow(app, repo: Repository, scan_ids: list[int], err: Console, *, show_progress: bool,
           after_scan: Callable[[Repository, int], None] | None = None,
           clock=time.monotonic, sleep=time.sleep) -> Followed:
    """Wait until every shard of `scan_ids` is done or failed, drawing the progress bar.
    `after_scan`: as a worker's (tasks.finish_scan_if_complete), should this command end a
    scan whose owners a worker was to look up."""
    store = ShardStore(repo.engine)
    result = Followed()
    started = clock()
    progress = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TextColumn("{task.fields[findings]}"), TimeElapsedColumn(), console=err,
                        disable=not show_progress, transient=False)
    watch = _Watch()
    _keep_shards_moving(app, store, scan_ids, err, watch, clock)  # the broker's run id, to see a restart by
    checked = clock()
    queues = {row["queue"] for row in store.of_scans(scan_ids)}
    unserved: set[str] = set()  # queues already said to have no live worker
    with progress:
        task = progress.add_task("scan", total=None, rate="", findings="")
        while True:
            _read_counts(repo, scan_ids, result)
            states = store.states(scan_ids)
            elapsed = clock() - started
            findings = " · ".join(f"{s} {result.by_severity[s]}" for s in ("critical", "high", "medium", "low")
                                  if result.by_severity.get(s))
            progress.update(task, total=result.total, completed=result.done, findings=findings,
                            rate=f"{result.done / elapsed:.0f}/s" if elapsed > 0 else "")
            if not states.get("queued") and not states.get("running"):
                break
            if clock() - checked >= BROKER_CHECK:
                checked = clock()
                # The scan is alive while this command follows it, although a worker may have
                # nothing to store for a while (a shard of tarpits, shards queued behind
                # another scan's): without this, `scans` would call it stalled after STALE.
                for scan_id in scan_ids:
                    repo.heartbeat(scan_id)
                _keep_shards_moving(app, store, scan_ids, err, watch, clock)
                for queue in sorted(queues - unserved):
                    if store.live_slots(queue) == 0:  # waiting is right (workers may come), silence is not
                        unserved.add(queue)
                        err.print(f"pacswatch scan: no live worker takes queue {queue}: its shards wait for "
                                  f"`pacswatch worker{'' if queue == 'pacswatch' else ' --vantage ' + queue.split('.', 1)[1]}`",
                                  highlight=False, markup=False)
            sleep(POLL)
    result.elapsed = clock() - started
    result.failed = store.of_scans(scan_ids, ["failed"])
    for scan_id in scan_ids:  # the last worker marks it; a race may leave that to us
        finish_scan_if_complete(repo, store, scan_id, after_scan)
        result.statuses[scan_id] = (repo.scan(scan_id) or {}).get("status", "missing")
    result.interrupted = any(s != "finished" for s in result.statuses.values())
    result.kept = stored_records(repo, scan_ids)
    return result


@dataclass
class _Watch:
    """What the follower knows of the broker and of the shards it sent again."""

    run_id: str | None = None
    down_since: float | None = None
    sent_at: dict[int, float] = field(default_factory=dict)  # shard id -> clock() when sent again


def _keep_shards_moving(app, store: ShardStore, scan_ids: list[int], err: Console, watch: _Watch, clock) -> None:
    """Send again what may be lost: the shards not under way when the broker answers again or
    as a new run (it may have forgotten them); a shard whose worker died (orphaned_shards), at
    most once per LEASE_STALE."""
    try:
        run_id = check_broker(app, timeout=1.0)
    except ConnectionError as exc:
        if watch.down_since is None:
            watch.down_since = clock()
            err.print(f"pacswatch scan: {exc}; waiting for it (the workers reconnect too)",
                      highlight=False, markup=False)
        return
    came_back = watch.down_since is not None
    restarted = None not in (run_id, watch.run_id) and run_id != watch.run_id
    watch.down_since = None
    watch.run_id = run_id or watch.run_id
    if came_back or restarted:
        # Not a running shard whose lease is fresh: its worker still runs it, and a second
        # delivery would only hold a task slot waiting for it (if that worker dies, its lease
        # goes stale and the branch below sends it).
        now = now_utc()
        rows = [row for row in store.of_scans(scan_ids, UNFINISHED)
                if row["state"] == "queued" or lease_stale(row, now)]
        why = f"the broker is {'back' if came_back else 'restarted'}"
    else:
        now = now_utc()
        served = {q for w in store.workers(live_only=True, now=now) for q in str(w["queues"]).split(",")}
        idle = store.running_anywhere(now) == 0
        rows = orphaned_shards(store.of_scans(scan_ids, UNFINISHED), served if idle else set(), now,
                               watch.sent_at, clock())
        why = "their workers went silent or their messages were lost"
    if not rows:
        return
    try:
        sent = send(app, rows)
    except Exception as exc:  # noqa: BLE001 - gone again mid-way (kombu's errors): all sent once it is back
        watch.down_since = clock()
        err.print(f"pacswatch scan: the broker went away again: {exc}", highlight=False, markup=False)
        return
    watch.sent_at.update({int(row["id"]): clock() for row in rows})
    err.print(f"pacswatch scan: {why}; {sent} unfinished shards sent again", highlight=False, markup=False)


def orphaned_shards(unfinished: list[Row], idle_queues: set[str], now: datetime, sent_at: dict[int, float],
                    clock_now: float) -> list[Row]:
    """The shards whose message is likely gone, not sent again in the last LEASE_STALE (pure):
    running with a stale lease (its worker died); or queued for LEASE_STALE on a queue that live
    workers take while no shard runs anywhere (idle workers would have taken it: the message died
    with a worker that held it before starting it, or between the broker's reply and the worker)."""
    wait = LEASE_STALE.total_seconds()

    def orphaned(row: Row) -> bool:
        if row["state"] == "running":
            return lease_stale(row, now)
        return row["queue"] in idle_queues and age(row["updated_at"], now) >= LEASE_STALE

    return [row for row in unfinished if orphaned(row) and clock_now - sent_at.get(int(row["id"]), -wait) >= wait]


def _read_counts(repo: Repository, scan_ids: list[int], result: Followed) -> None:
    with repo.engine.connect() as conn:
        rows = conn.execute(select(scans.c.plan_size, scans.c.done, scans.c.counts)
                            .where(scans.c.id.in_(scan_ids))).all()
        severities = conn.execute(select(observations.c.severity, func.count())
                                  .where(observations.c.scan_id.in_(scan_ids), observations.c.severity.is_not(None))
                                  .group_by(observations.c.severity)).all()
    result.total = sum(int(r[0]) for r in rows)
    result.done = sum(int(r[1] or 0) for r in rows)
    result.by_status = Counter()
    for r in rows:
        result.by_status.update({str(k): int(v) for k, v in (r[2] or {}).items()})
    result.by_severity = Counter({str(k): int(v) for k, v in severities})


def stored_records(repo: Repository, scan_ids: list[int]) -> list[Record]:
    """The records the scans stored that show a service (what a local scan keeps in memory)."""
    kept: list[Record] = []
    for scan_id in scan_ids:
        for row in repo.observations(scan_id=scan_id):
            if row["service"] is not None or row["severity"] is not None:
                kept.append(Record.model_validate(row["record"]))
    return kept
