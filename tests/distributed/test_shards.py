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
