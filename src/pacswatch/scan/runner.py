"""The scan runner: a fixed pool of tasks pulling endpoints from one iterator and probing them.

A fixed pool (not a task per endpoint) keeps memory flat however many endpoints there are: at
most `concurrency` probes and their buffers exist at once. New connections are paced by the
global rate limiter inside the probes' connect. Blocked endpoints are never probed: they become
records with status `blocked` and the reason, so a refusal is reported, not silent.

Probes return records with facts; `probe_endpoint` runs one and assesses its record (assess.py,
pure): the one place a record gets its severity and reasons, for a scan, its worker processes
and the `probe` command alike.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Protocol

from pacswatch.assess import assess
from pacswatch.probes.base import Endpoint, Probe, ProbeContext
from pacswatch.record import Record
from pacswatch.status import Status


class PlannedLike(Protocol):
    index: int
    ip: str
    port: int
    blocked_reason: str | None


@dataclass
class ScanStats:
    total: int = 0
    done: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_severity: Counter = field(default_factory=Counter)
    started: float = 0.0
    interrupted: bool = False

    def add(self, record: Record) -> None:
        self.done += 1
        self.by_status[record.status] += 1
        if record.severity:
            self.by_severity[record.severity] += 1


def blocked_record(ip: str, port: int, reason: str) -> Record:
    return Record(ip=ip, port=port, status=Status.BLOCKED, detail=reason, scanned_at=datetime.now(timezone.utc))


async def probe_endpoint(probe: Probe, ctx: ProbeContext, endpoint: Endpoint) -> Record:
    """Run `probe` on `endpoint` and assess what it found."""
    record = await probe.run(ctx, endpoint)
    record.severity, record.reasons = assess(record)
    return record


async def run_scan(
    planned: Iterable[PlannedLike],
    probe_for: Callable[[int], Probe],
    ctx: ProbeContext,
    *,
    concurrency: int,
    on_record: Callable[[int, Record], None],
    stats: ScanStats | None = None,
    stop: asyncio.Event | None = None,
) -> ScanStats:
    """Probe every planned endpoint; call `on_record(index, record)` as each one completes.

    `stop`, when set, makes the pool take no new endpoint; probes in flight are cancelled by the
    caller if it cannot wait for them.
    """
    stats = stats or ScanStats()
    stats.started = asyncio.get_running_loop().time()
    iterator = iter(planned)
    stop = stop or asyncio.Event()

    def take() -> PlannedLike | None:
        if stop.is_set():
            return None
        return next(iterator, None)

    async def take_and_probe() -> None:
        while (item := take()) is not None:
            if item.blocked_reason is not None:
                record = blocked_record(item.ip, item.port, item.blocked_reason)
            else:
                record = await probe_endpoint(probe_for(item.port), ctx, Endpoint(item.ip, item.port))
            stats.add(record)
            on_record(item.index, record)

    pool = [asyncio.create_task(take_and_probe()) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*pool)
    finally:
        for task in pool:
            task.cancel()
    return stats
