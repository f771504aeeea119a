"""The pure parts of distributed scans: cutting a plan into shards, sharing the rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.distributed.app import DEFAULT_QUEUE, check_vantage, queue_for
from pacswatch.distributed.shards import cut, share


@given(st.integers(0, 100_000), st.integers(1, 5000))
def test_shards_cover_the_plan_once_in_order(size, shard_size):
    spans = cut(size, shard_size)
    covered = [i for first, last in spans for i in range(first, last + 1)]
    assert covered == list(range(size))
    assert all(last - first + 1 <= shard_size for first, last in spans)


def test_cut_refuses_empty_shards():
    with pytest.raises(ValueError):
        cut(10, 0)


def test_rate_and_concurrency_are_shared_among_live_slots():
    assert share(200.0, 200, 4) == (50.0, 50)
    assert share(200.0, 3, 4) == (50.0, 1)  # never below one probe at a time
    assert share(200.0, 200, 0) == (200.0, 200)  # no heartbeat yet: this shard is the one running


def test_queues_are_named_per_vantage():
    assert queue_for(None) == DEFAULT_QUEUE
    assert queue_for("eu-1") == "pacswatch.eu-1"
    for bad in ("", "a b", "x" * 65, "../q", "é"):
        with pytest.raises(ValueError):
            check_vantage(bad)


def test_shards_sent_again_are_those_whose_message_is_likely_gone():
    from datetime import datetime, timedelta, timezone

    from pacswatch.distributed.follow import orphaned_shards
    from pacswatch.store.shards import LEASE_STALE

    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    old, fresh = now - LEASE_STALE - timedelta(seconds=1), now - timedelta(seconds=1)

    def shard(n: int, state: str, at: datetime, queue: str = DEFAULT_QUEUE) -> dict:
        return {"id": n, "state": state, "queue": queue, "lease_owner": "w/1" if state == "running" else None,
                "lease_at": at if state == "running" else None, "updated_at": at.replace(tzinfo=None)}

    rows = [shard(1, "running", old), shard(2, "running", fresh), shard(3, "queued", old),
            shard(4, "queued", fresh), shard(5, "queued", old, queue="pacswatch.east")]
    # Stale lease: its worker died. Queued long on a queue whose live workers are idle: lost.
    assert [r["id"] for r in orphaned_shards(rows, {DEFAULT_QUEUE}, now, {}, 100.0)] == [1, 3]
    # Workers busy somewhere (not idle): a queued shard may just be waiting its turn.
    assert [r["id"] for r in orphaned_shards(rows, set(), now, {}, 100.0)] == [1]
    # Sent again 10 s ago: not again before LEASE_STALE has passed.
    assert [r["id"] for r in orphaned_shards(rows, {DEFAULT_QUEUE}, now, {1: 90.0}, 100.0)] == [3]
    later = 90.0 + LEASE_STALE.total_seconds()
    assert [r["id"] for r in orphaned_shards(rows, {DEFAULT_QUEUE}, now, {1: 90.0}, later)] == [1, 3]


def test_a_failing_celery_worker_is_started_again_until_it_keeps_failing_soon_after_its_start():
    from pacswatch.distributed.restart import GIVE_UP_AFTER, QUICK, quick_failures_after, restart_pause

    failures, pauses = 0, []
    for _ in range(GIVE_UP_AFTER + 1):
        failures = quick_failures_after(failures, ran_for=1.0)
        pauses.append(restart_pause(failures))
    assert pauses[:-1] == sorted(pauses[:-1]) and pauses[0] == 1.0 and pauses[-1] is None
    # A failure after a long run starts the count again: one broker restart a day never gives up.
    assert quick_failures_after(GIVE_UP_AFTER, ran_for=QUICK + 1) == 1


def test_a_worker_is_named_as_celery_names_it_so_its_heartbeat_matches_its_shards_and_ping():
    from pacswatch.cli.distributed import worker_name

    assert worker_name(None, None, 42, "scan1") == "pacswatch.42@scan1"
    assert worker_name(None, "east", 42, "scan1") == "east.42@scan1"
    assert worker_name("opw1", None, 42, "scan1") == "opw1@scan1"  # Celery would say celery@opw1
    assert worker_name("w0@test", None, 42, "scan1") == "w0@test"
