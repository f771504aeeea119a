"""The rows of distributed scans: shards (a scan's plan cut into index ranges, one Celery task
each) and the workers' heartbeats. It moves rows; the cutting is distributed/shards.py and the
running distributed/tasks.py.

A shard's life: queued (created, or given back) -> running (a worker took it; `tries` + 1) ->
done (every index stored) or failed (an error, or `max_tries` starts without an end: it keeps
killing its workers). Progress itself is not here: it is the scan's row and scan_work, written
with the records (Repository.ingest).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from pacswatch.store.repository import Row, _row, now_utc
from pacswatch.store.tables import scan_inputs, scans, shards, workers

HEARTBEAT = 5.0  # seconds between a worker's heartbeats
LIVE = timedelta(seconds=3 * HEARTBEAT)  # a worker silent this long is not counted live
UNFINISHED = ("queued", "running")
# A running shard's lease is renewed every LEASE_RENEW seconds by the process running it; one
# not renewed for LEASE_STALE is its dead owner's (SIGKILL, a lost machine), and another
# delivery of the shard takes it over from its stored progress.
# Who looks up the owners of what a distributed scan found (scan_inputs.attribute): the scan
# command once it has followed the scan to its end, or the worker that ends it (--detach).
BY_COMMAND, BY_WORKER = "command", "worker"
LEASE_RENEW = 5.0
LEASE_STALE = timedelta(seconds=4 * LEASE_RENEW)


class ShardStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ shards

    def create(self, scan_id: int, spans: Iterable[tuple[int, int]], *, queue: str,
               vantage: str | None) -> list[int]:
        """One queued shard per (first, last) span, numbered from 0; their ids."""
        at = now_utc()
        rows = [{"scan_id": scan_id, "number": n, "first_index": a, "last_index": b, "queue": queue,
                 "state": "queued", "tries": 0, "vantage": vantage, "updated_at": at}
                for n, (a, b) in enumerate(spans)]
        with self.engine.begin() as conn:
            if rows:
                conn.execute(insert(shards), rows)
            return list(conn.execute(select(shards.c.id).where(shards.c.scan_id == scan_id)
                                     .order_by(shards.c.number)).scalars())

    def get(self, shard_id: int) -> Row | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(shards).where(shards.c.id == shard_id)).mappings().first()
        return _row(row) if row is not None else None

    def of_scans(self, scan_ids: Iterable[int], states: Iterable[str] = ()) -> list[Row]:
        query = select(shards).where(shards.c.scan_id.in_(list(scan_ids)))
        if states := list(states):
            query = query.where(shards.c.state.in_(states))
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query.order_by(shards.c.scan_id, shards.c.number)).mappings()]

    def running_anywhere(self, now: datetime | None = None) -> int:
        """How many shards of any scan a live process runs now (running, their lease fresh: a
        dead worker's shard keeps its state until it is taken over)."""
        fresh = (now or now_utc()) - LEASE_STALE
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(shards).where(
                shards.c.state == "running", shards.c.lease_at > fresh)).scalar_one())

    def states(self, scan_ids: Iterable[int]) -> dict[str, int]:
        """How many shards of these scans are in each state."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(shards.c.state, func.count()).where(shards.c.scan_id.in_(list(scan_ids)))
                                .group_by(shards.c.state)).all()
        return {str(state): int(count) for state, count in rows}

    def take(self, shard_id: int, worker: str, max_tries: int, *, owner: str | None = None,
             now: datetime | None = None) -> tuple[str, Row | None]:
        """A worker starts shard `shard_id`: ("run", row) with its tries counted and its lease
        given to `owner` (the process); ("done", row) if it is finished already (a duplicate
        delivery); ("leased", row) if another owner's lease on it is fresh (the broker's
        visibility timeout passed while it runs: this delivery must not probe it too);
        ("failed", row) if it was failed before or this start would be one too many
        (`max_tries` starts that never ended: marked now)."""
        at = now or now_utc()
        owner = owner or worker
        with self.engine.begin() as conn:
            found = conn.execute(select(shards).where(shards.c.id == shard_id).with_for_update()).mappings().first()
            if found is None:
                return "missing", None
            row = _row(found)
            if row["state"] in ("done", "failed"):
                return row["state"], row
            if lease_held(row, owner, at):
                return "leased", row
            if row["tries"] >= max_tries:
                error = (f"started {row['tries']} times without finishing (its workers died: killed, out of "
                         f"memory, or a crash); last worker {row['worker']}")
                conn.execute(update(shards).where(shards.c.id == shard_id).values(
                    state="failed", error=error, updated_at=now_utc()))
                return "failed", {**row, "state": "failed", "error": error}
            conn.execute(update(shards).where(shards.c.id == shard_id).values(
                state="running", tries=row["tries"] + 1, worker=worker, updated_at=at, lease_owner=owner,
                lease_at=at))
            return "run", {**row, "tries": row["tries"] + 1, "worker": worker, "lease_owner": owner}

    def renew(self, shard_id: int, owner: str) -> bool:
        """The lease of `owner` on its running shard moved on; False if it is no longer its own."""
        with self.engine.begin() as conn:
            return bool(conn.execute(update(shards).where(
                shards.c.id == shard_id, shards.c.lease_owner == owner, shards.c.state == "running").values(
                lease_at=now_utc())).rowcount)

    def finish(self, shard_id: int, state: str, error: str | None = None) -> None:
        """The shard ends (done, failed) or is given back (queued): its lease ends with it."""
        with self.engine.begin() as conn:
            conn.execute(update(shards).where(shards.c.id == shard_id).values(
                state=state, error=error, updated_at=now_utc(), lease_owner=None, lease_at=None))

    # ------------------------------------------------------------------ the scan's inputs and end

    def save_inputs(self, scan_id: int, inputs: dict) -> None:
        """What the workers rebuild the scan's plan and lifecycle from (campaign/planinputs.py)."""
        with self.engine.begin() as conn:
            conn.execute(insert(scan_inputs), {"scan_id": scan_id, **inputs})

    def inputs(self, scan_id: int) -> Row | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(scan_inputs).where(scan_inputs.c.scan_id == scan_id)).mappings().first()
        return _row(row) if row is not None else None

    def set_attribute(self, scan_ids: Iterable[int], attribute: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(scan_inputs).where(scan_inputs.c.scan_id.in_(list(scan_ids))).values(
                attribute=attribute))

    def end_scan(self, scan_id: int, status: str) -> bool:
        """Mark a running scan finished or interrupted; True for the one caller that did (the
        workers ending its last shards and the command following it may all try: PostgreSQL
        makes the second UPDATE wait for the first and then find the scan no longer running)."""
        at = now_utc()
        with self.engine.begin() as conn:
            return bool(conn.execute(update(scans).where(scans.c.id == scan_id, scans.c.status == "running").values(
                status=status, updated_at=at, finished_at=at if status == "finished" else None)).rowcount)

    def requeue(self, scan_ids: Iterable[int], *, reset_tries: bool) -> list[Row]:
        """Every unfinished (and, with `reset_tries`, failed) shard of these scans set back to
        queued: `scan --resume` sends them again. The rows, to enqueue."""
        states = [*UNFINISHED, *(["failed"] if reset_tries else [])]
        rows = self.of_scans(scan_ids, states)
        if rows:
            values: dict = {"state": "queued", "updated_at": now_utc()}
            if reset_tries:
                values.update(tries=0, error=None)
            with self.engine.begin() as conn:
                conn.execute(update(shards).where(shards.c.id.in_([r["id"] for r in rows])).values(**values))
        return rows

    # ------------------------------------------------------------------ workers

    def heartbeat(self, name: str, *, vantage: str | None, queues: Iterable[str], concurrency: int,
                  started_at: datetime | None = None) -> None:
        """This worker is alive (a row added the first time, its beat moved on after)."""
        at = now_utc()
        with self.engine.begin() as conn:
            changed = conn.execute(update(workers).where(workers.c.name == name).values(
                last_heartbeat=at, vantage=vantage, queues=",".join(queues), concurrency=concurrency,
                pid=os.getpid(), host=socket.gethostname(),
                **({"started_at": started_at, "tasks_done": 0} if started_at is not None else {}))).rowcount
            if not changed:
                conn.execute(insert(workers), {"name": name, "vantage": vantage, "queues": ",".join(queues),
                                               "concurrency": concurrency, "tasks_done": 0, "pid": os.getpid(),
                                               "host": socket.gethostname(), "started_at": started_at or at,
                                               "last_heartbeat": at})

    def task_done(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.name == name).values(tasks_done=workers.c.tasks_done + 1))

    def gone(self, name: str) -> None:
        """A worker that stops says so: its share of the rate goes to the others at once."""
        with self.engine.begin() as conn:
            conn.execute(update(workers).where(workers.c.name == name).values(
                last_heartbeat=now_utc() - 2 * LIVE))

    def workers(self, *, live_only: bool = False, now: datetime | None = None) -> list[Row]:
        query = select(workers)
        if live_only:
            query = query.where(workers.c.last_heartbeat >= (now or now_utc()) - LIVE)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query.order_by(workers.c.name)).mappings()]

    def live_slots(self, queue: str, *, now: datetime | None = None) -> int:
        """Task slots (Celery concurrency) of the live workers that take `queue`: how many
        shards of a scan can run at once, among which its rate is shared."""
        return sum(int(w["concurrency"]) for w in self.workers(live_only=True, now=now)
                   if queue in str(w["queues"]).split(","))


def lease_held(row: Row, owner: str, now: datetime, stale: timedelta = LEASE_STALE) -> bool:
    """Whether another process holds a fresh lease on this shard row (pure)."""
    if row.get("state") != "running" or row.get("lease_owner") in (None, owner) or row.get("lease_at") is None:
        return False
    return not lease_stale(row, now, stale)


def lease_stale(row: Row, now: datetime, stale: timedelta = LEASE_STALE) -> bool:
    """Whether this running shard's lease was last renewed `stale` or longer ago: the process
    that held it is gone (pure)."""
    at = row.get("lease_at")
    if row.get("state") != "running" or at is None:
        return False
    return age(at, now) >= stale


def age(at: datetime, now: datetime) -> timedelta:
    """How long before `now` a stored moment was (SQLite gives it back without its zone)."""
    return now - (at.replace(tzinfo=now.tzinfo) if at.tzinfo is None else at)
