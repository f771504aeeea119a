"""Idempotent ingest of a shard, on SQLite and PostgreSQL: written twice, one observation per
endpoint and scan, and the scan's counts and done stay right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from datetime import timedelta

from pacswatch.store.repository import ShardSpan, now_utc
from pacswatch.store.shards import LEASE_STALE, ShardStore
from pacswatch.store.tables import observations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from test_store_repository import T0, dicom, gone, new_scan  # noqa: E402


def shard_of(repo, scan_id, first, last):
    [shard_id] = ShardStore(repo.engine).create(scan_id, [(first, last)], queue="pacswatch", vantage="eu")
    return ShardSpan(shard_id, first, last)


def test_a_shard_written_twice_stores_each_endpoint_once(repo):
    scan = new_scan(repo, size=4)
    span = shard_of(repo, scan, 0, 3)
    items = [(0, dicom("127.67.0.1", 104)), (1, gone("127.67.0.2", 104, T0)), (2, dicom("127.67.0.3", 104, "low")),
             (3, dicom("127.67.0.4", 104, "high"))]
    repo.ingest(scan, items[:2], shard=span, vantage="eu")
    repo.ingest(scan, items, shard=span, vantage="eu")  # redelivered: the first two again, then the rest
    repo.ingest(scan, items, shard=span, vantage="eu")  # and the whole shard once more
    rows = repo.observations(scan_id=scan)
    assert sorted((o["ip"], o["vantage"]) for o in rows) == [
        ("127.67.0.1", "eu"), ("127.67.0.3", "eu"), ("127.67.0.4", "eu")]
    row = repo.scan(scan)
    assert row["done"] == 4 and sum(row["counts"].values()) == 4
    assert len(repo.events(scan_id=scan)) == 3  # one "new" per finding, not one per delivery
    assert len(repo.shard_done(scan, span)) == 4


def test_shards_keep_their_own_work(repo):
    scan = new_scan(repo, size=6)
    a_id, b_id = ShardStore(repo.engine).create(scan, [(0, 2), (3, 5)], queue="pacswatch", vantage=None)
    a, b = ShardSpan(a_id, 0, 2), ShardSpan(b_id, 3, 5)
    repo.ingest(scan, [(4, gone("127.67.1.4", 104, T0))], shard=b)
    repo.ingest(scan, [(0, gone("127.67.1.0", 104, T0)), (1, gone("127.67.1.1", 104, T0))], shard=a)
    repo.ingest(scan, [(3, gone("127.67.1.3", 104, T0))], shard=b)
    assert sorted(repo.completed(scan).intervals()) == [(0, 1), (3, 4)]
    assert repo.scan(scan)["done"] == 4


def test_the_database_refuses_a_second_observation_of_an_endpoint_in_a_scan(repo):
    scan = new_scan(repo)
    repo.ingest(scan, [(0, dicom("127.67.2.1", 104))])
    row = {k: v for k, v in repo.observations(scan_id=scan)[0].items() if k != "id"}
    with pytest.raises(IntegrityError), repo.engine.begin() as conn:
        conn.execute(observations.insert(), [row])


def test_a_shard_that_keeps_killing_workers_is_failed_after_max_tries(repo):
    scan = new_scan(repo)
    store = ShardStore(repo.engine)
    [shard_id] = store.create(scan, [(0, 9)], queue="pacswatch", vantage=None)
    # Each start's worker dies: its lease goes stale before the next delivery takes the shard.
    later = [now_utc() + n * 2 * LEASE_STALE for n in range(6)]
    assert [store.take(shard_id, f"w{n}", 3, now=later[n])[0] for n in range(4)] == ["run", "run", "run", "failed"]
    row = store.get(shard_id)
    assert row["state"] == "failed" and "3 times" in row["error"] and row["worker"] == "w2"
    assert store.take(shard_id, "w4", 3, now=later[4])[0] == "failed"  # stays failed
    [again] = store.requeue([scan], reset_tries=True)  # scan --resume
    assert again["id"] == shard_id and store.take(shard_id, "w5", 3, now=later[5])[0] == "run"


def test_a_fresh_lease_keeps_a_second_delivery_off_the_shard(repo):
    """Issue 14: Redis redelivers a shard that outlives its visibility timeout; the second
    delivery must not probe it while the first one's lease is renewed, and takes it over (from
    its stored progress) once the lease is stale: its owner died."""
    scan = new_scan(repo)
    store = ShardStore(repo.engine)
    [shard_id] = store.create(scan, [(0, 9)], queue="pacswatch", vantage=None)
    t0 = now_utc()
    assert store.take(shard_id, "a", 3, owner="a/1", now=t0)[0] == "run"
    assert store.take(shard_id, "b", 3, owner="b/2", now=t0 + LEASE_STALE / 2)[0] == "leased"
    assert store.renew(shard_id, "a/1") and not store.renew(shard_id, "b/2")
    verdict, row = store.take(shard_id, "b", 3, owner="b/2", now=now_utc() + LEASE_STALE + timedelta(seconds=1))
    assert verdict == "run" and row["tries"] == 2 and row["lease_owner"] == "b/2"
    store.finish(shard_id, "done")
    assert store.take(shard_id, "c", 3, owner="c/3")[0] == "done"
    assert store.get(shard_id)["lease_owner"] is None


def test_only_a_shard_under_a_fresh_lease_counts_as_running_anywhere(repo):
    # The follower sends a lost queued shard again only while no shard runs anywhere: a dead
    # worker's shard, still marked running, must not keep that from happening.
    scan = new_scan(repo)
    store = ShardStore(repo.engine)
    first, _ = store.create(scan, [(0, 4), (5, 9)], queue="pacswatch", vantage=None)
    assert store.running_anywhere() == 0
    t0 = now_utc()
    assert store.take(first, "a", 3, owner="a/1", now=t0)[0] == "run"
    assert store.running_anywhere(now=t0 + LEASE_STALE / 2) == 1
    assert store.running_anywhere(now=t0 + LEASE_STALE + timedelta(seconds=1)) == 0
    store.finish(first, "done")
    assert store.running_anywhere(now=t0) == 0
