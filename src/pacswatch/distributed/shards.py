"""Cutting a scan's plan into shards, and sharing a scan's rate among the shards that run: pure.

A shard is a range of plan indexes [first, last] of a stored scan: the worker rebuilds the plan
from the scan's seed, so only (shard id) travels through the broker, never endpoints. Plan order
is the seeded permutation, so a shard's endpoints are spread over the whole target space (its
consecutive probes hit different networks) just as a local scan's are.
"""

from __future__ import annotations

DEFAULT_SHARD_SIZE = 4096


def cut(plan_size: int, shard_size: int = DEFAULT_SHARD_SIZE) -> list[tuple[int, int]]:
    """[first, last] index ranges covering 0 .. plan_size - 1, each `shard_size` long but the last."""
    if shard_size < 1:
        raise ValueError("a shard holds at least one endpoint")
    return [(first, min(first + shard_size, plan_size) - 1) for first in range(0, plan_size, shard_size)]


def share(rate: float, concurrency: int, live_slots: int) -> tuple[float, int]:
    """One running shard's part of the scan's rate and concurrency, when `live_slots` shards can
    run at once (the live workers' task slots on the scan's queue; at least one, this one).

    Shared out rather than enforced through Redis per connection: a token per connect from Redis
    would be a network round trip on every probe's critical path, and a shard is short (minutes),
    so a worker that joins or leaves changes the sum for one shard's length at most."""
    slots = max(1, live_slots)
    return rate / slots, max(1, concurrency // slots)
