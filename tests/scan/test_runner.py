"""The runner: bounded concurrency, every endpoint once, blocked ones reported, stop honoured.

The probe here is a stand-in that only sleeps: these tests are about the runner's scheduling,
which does not depend on what a probe does on the wire.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pacswatch.probes.base import ProbeContext
from pacswatch.record import Record
from pacswatch.scan.runner import run_scan
from pacswatch.status import Status


@dataclass
class Planned:
    index: int
    ip: str
    port: int
    blocked_reason: str | None = None


class SleepyProbe:
    name = "sleepy"
    default_ports = (1,)

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.seen = []

    async def run(self, ctx, endpoint):
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.seen.append((endpoint.ip, endpoint.port))
        await asyncio.sleep(0.001)
        self.active -= 1
        return Record(ip=endpoint.ip, port=endpoint.port, status=Status.CONNECTION_REFUSED)


def test_concurrency_is_bounded_and_each_endpoint_done_once():
    probe = SleepyProbe()
    plan = [Planned(i, f"127.0.{i // 256}.{i % 256}", 104) for i in range(500)]
    out = []
    stats = asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=17,
                                 on_record=lambda i, r: out.append(i)))
    assert probe.peak == 17
    assert sorted(out) == list(range(500))
    assert stats.done == 500 and stats.by_status[Status.CONNECTION_REFUSED] == 500


def test_blocked_endpoints_are_reported_not_probed():
    probe = SleepyProbe()
    plan = [Planned(0, "127.0.0.1", 104), Planned(1, "192.0.2.1", 104, "documentation range")]
    records = {}
    asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=4,
                         on_record=lambda i, r: records.__setitem__(i, r)))
    assert probe.seen == [("127.0.0.1", 104)]
    assert records[1].status == Status.BLOCKED and records[1].detail == "documentation range"


def test_stop_event_ends_the_scan_early():
    probe = SleepyProbe()
    plan = (Planned(i, "127.0.0.1", 1000 + i) for i in range(10_000))
    stop = asyncio.Event()
    done = []

    def on_record(i, r):
        done.append(i)
        if len(done) == 50:
            stop.set()

    asyncio.run(run_scan(plan, lambda port: probe, ProbeContext(), concurrency=5, on_record=on_record, stop=stop))
    assert 50 <= len(done) < 60
