"""The one writer of a scan (StoreSink) and the plan of what is left (RemainingPlan)."""

from __future__ import annotations

import time

import pytest

from pacswatch.campaign.scanrun import RemainingPlan, StoreSink
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import Record
from pacswatch.store.errors import StoreError
from pacswatch.targets import ScanPlan, parse_targets


class FakeRepo:
    def __init__(self, fail_after=None):
        self.batches, self.heartbeats, self.fail_after = [], 0, fail_after

    def ingest(self, scan_id, items, *, work, policy, keep_all):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("disk full")
        self.batches.append(([i for i, _ in items], sorted(i for a, b in work.intervals() for i in range(a, b + 1))))

    def heartbeat(self, scan_id):
        self.heartbeats += 1


def record(n):
    return Record(ip="127.0.0.1", port=1000 + n, status="connection-refused")


def test_batches_by_size_and_by_time_with_the_completed_indexes():
    repo = FakeRepo()
    sink = StoreSink(repo, 1, IntervalSet(), policy=RescanPolicy(), batch=3, flush_interval=0.2).start()
    for n in range(4):
        sink.put(n, record(n))
    time.sleep(0.3)
    assert repo.batches == []  # nothing is written before the output showing it is flushed
    sink.release()
    time.sleep(0.5)  # released: written in batches of at most 3
    assert repo.batches == [([0, 1, 2], [0, 1, 2]), ([3], [0, 1, 2, 3])]
    sink.put(4, record(4))
    sink.release()
    sink.put(5, record(5))  # its output was never flushed: not done, not written
    sink.close()
    assert repo.batches == [([0, 1, 2], [0, 1, 2]), ([3], [0, 1, 2, 3]), ([4], [0, 1, 2, 3, 4])]


def test_a_writer_error_stops_the_scan_loudly():
    repo = FakeRepo(fail_after=0)
    sink = StoreSink(repo, 1, IntervalSet(), policy=RescanPolicy(), batch=1, flush_interval=0.05).start()
    sink.put(0, record(0))
    sink.release()
    time.sleep(0.3)
    with pytest.raises(StoreError, match="disk full"):
        sink.put(1, record(1))
    with pytest.raises(StoreError, match="disk full"):
        sink.close()


def test_remaining_plan_skips_done_indexes_in_plan_order():
    plan = ScanPlan(parse_targets(["127.0.0.0/29"]), (104, 11112), seed=3)
    done = IntervalSet([(0, 4), (7, 7), (10, 12)])
    remaining = RemainingPlan(plan, done)
    indexes = [e.index for e in remaining]
    assert indexes == [i for i in range(plan.size) if i not in done]
    assert remaining.size == len(indexes) == plan.size - 9
    assert [(e.ip, e.port) for e in remaining] == [(plan[i].ip, plan[i].port) for i in indexes]
