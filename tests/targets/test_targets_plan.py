"""The scan plan: each endpoint once, refusals tagged, resumable."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.targets import (
    DEFAULT_DICOM_PORTS,
    Blocklist,
    ScanPlan,
    Scope,
    TargetSet,
    parse_targets,
)

FAKE_DNS = {"lab.test": ["127.0.0.1", "::1"], "pacs.example.org": ["192.0.2.7"]}


def targets(*specs: str) -> TargetSet:
    return parse_targets(list(specs), resolver=lambda name: FAKE_DNS[name])


def test_each_address_port_exactly_once_plus_pinned() -> None:
    ts = targets("127.0.0.0/29", "::1", "pacs.example.org", "127.0.0.1:104", "127.0.0.1:8042", "[::2]:4242")
    plan = ScanPlan(ts, [104, 11112, 4242], seed=9)
    got = list(plan)
    expected = {(str(ts.address_at(i)), p) for i in range(ts.size) for p in (104, 11112, 4242)}
    expected |= {("127.0.0.1", 8042), ("::2", 4242)}  # 127.0.0.1:104 is already in the grid
    counts = Counter((e.ip, e.port) for e in got)
    assert set(counts) == expected and set(counts.values()) == {1}
    assert len(plan) == plan.size == len(expected) == 10 * 3 + 2
    assert [e.index for e in got] == list(range(len(plan)))


def test_blocked_endpoints_are_tagged_not_dropped() -> None:
    ts = targets("192.0.2.0/30", "127.0.0.1", "lab.test")
    plan = ScanPlan(ts, [104, 11112], seed=1)
    got = list(plan)
    assert len(got) == (4 + 2) * 2
    blocked = {(e.ip, e.port): e.blocked_reason for e in got if e.blocked}
    assert set(blocked) == {(f"192.0.2.{i}", p) for i in range(4) for p in (104, 11112)}
    assert all("RFC 5737" in r for r in blocked.values())
    assert all(e.blocked_reason is None for e in got if e.ip in ("127.0.0.1", "::1"))


def test_link_local_and_the_metadata_service_are_blocked_by_default() -> None:
    # The plan's tag is what keeps the scan from connecting: checked here, with no traffic.
    plan = ScanPlan(targets("169.254.169.254", "169.254.0.0/31", "[fe80::1]:104", "fd00:ec2::254"), [104], seed=1)
    tags = {e.ip: e.blocked_reason for e in plan}
    assert set(tags) == {"169.254.169.254", "169.254.0.0", "169.254.0.1", "fe80::1", "fd00:ec2::254"}
    assert all(reason and "link-local" in reason for ip, reason in tags.items() if ip != "fd00:ec2::254")
    assert "metadata" in tags["fd00:ec2::254"]


def test_without_blocklist_nothing_is_tagged() -> None:
    plan = ScanPlan(targets("192.0.2.0/30"), [104], seed=1, blocklist=Blocklist())
    assert [e.blocked for e in plan] == [False] * 4


def test_scope_refusals_are_tagged() -> None:
    scope = Scope.from_specs(["127.0.0.0/30"])
    plan = ScanPlan(targets("127.0.0.0/29", "[::1]:104"), [104], seed=2, scope=scope)
    tags = {e.ip: e.blocked_reason for e in plan}
    assert all(tags[f"127.0.0.{i}"] is None for i in range(4))
    assert all(tags[f"127.0.0.{i}"] == "outside the configured scope" for i in range(4, 8))
    assert tags["::1"] == "outside the configured scope"


def test_blocklist_reason_takes_precedence_over_scope() -> None:
    plan = ScanPlan(targets("192.0.2.1"), [104], seed=0, scope=Scope([]))
    assert "RFC 5737" in plan[0].blocked_reason


def test_hostnames_travel_with_endpoints() -> None:
    plan = ScanPlan(targets("lab.test", "pacs.example.org:4242"), [104], seed=4, blocklist=Blocklist())
    names = {(e.ip, e.port): e.hostname for e in plan}
    assert names == {("127.0.0.1", 104): "lab.test", ("::1", 104): "lab.test", ("192.0.2.7", 4242): "pacs.example.org"}


@pytest.mark.parametrize("start", [0, 1, 17, 59, 60, 100])
def test_resume_from_offset(start: int) -> None:
    plan = ScanPlan(targets("127.0.0.0/28", "[::1]:104"), [104, 11112, 4242, 2761], seed=123)
    full = list(plan)
    assert list(plan.iter_from(start)) == full[start:]
    if start < len(plan):
        assert plan[start] == full[start]


def test_same_inputs_same_order_and_fingerprint() -> None:
    a = ScanPlan(targets("127.0.0.0/28"), DEFAULT_DICOM_PORTS, seed=5)
    b = ScanPlan(targets("127.0.0.8/29", "127.0.0.0-7"), DEFAULT_DICOM_PORTS, seed=5)
    assert list(a) == list(b) and a.fingerprint() == b.fingerprint()
    c = ScanPlan(targets("127.0.0.0/28"), DEFAULT_DICOM_PORTS, seed=6)
    assert list(c) != list(a) and c.fingerprint() != a.fingerprint()
    d = ScanPlan(targets("127.0.0.0/27"), DEFAULT_DICOM_PORTS, seed=5)
    assert d.fingerprint() != a.fingerprint()


def test_huge_plan_is_lazy() -> None:
    plan = ScanPlan(parse_targets(["0.0.0.0/0"]), DEFAULT_DICOM_PORTS, seed=1)
    assert len(plan) == 2**32 * len(DEFAULT_DICOM_PORTS)
    last = plan[len(plan) - 1]
    assert last.index == len(plan) - 1 and last.port in DEFAULT_DICOM_PORTS
    IPv4Address(last.ip)
    assert sum(1 for _ in zip(range(1000), plan.iter_from(len(plan) - 1000))) == 1000


def test_port_validation_and_pinned_only() -> None:
    ts = targets("127.0.0.1")
    for bad in ([0], [65536], [104, 104], [True]):
        with pytest.raises(ValueError):
            ScanPlan(ts, bad, seed=0)
    with pytest.raises(ValueError):
        list(ScanPlan(ts, [104], seed=0).iter_from(-1))
    plan = ScanPlan(targets("127.0.0.1:104", "127.0.0.2"), [], seed=0)
    assert [(e.ip, e.port) for e in plan] == [("127.0.0.1", 104)]
    assert len(ScanPlan(TargetSet(), [104], seed=0)) == 0


@given(
    st.lists(st.integers(0, 255), max_size=20),
    st.lists(st.tuples(st.integers(0, 255), st.sampled_from([104, 4242, 8042])), max_size=6),
    st.lists(st.sampled_from([104, 11112, 4242, 2761]), unique=True, max_size=4),
    st.integers(),
)
def test_plan_property(hosts: list[int], pinned: list[tuple[int, int]], ports: list[int], seed: int) -> None:
    specs = [f"127.0.0.{h}" for h in hosts] + [f"127.0.0.{h}:{p}" for h, p in pinned]
    plan = ScanPlan(targets(*specs), ports, seed)
    got = [(e.ip, e.port) for e in plan]
    expected = {(f"127.0.0.{h}", p) for h in hosts for p in ports} | {(f"127.0.0.{h}", p) for h, p in pinned}
    assert sorted(got) == sorted(expected)
    assert len(plan) == len(expected)


def test_distinct_ports_counts_what_the_endpoints_use() -> None:
    """The scan banner's port count: pinned HOST:PORT targets alone do not scan the port list."""
    pinned_only = ScanPlan(targets("127.0.0.1:104", "127.0.0.2:104", "127.0.0.3:4242"), [104, 11112, 2761], seed=0)
    assert pinned_only.distinct_ports == 2
    mixed = ScanPlan(targets("127.0.0.1:5000", "127.0.0.9"), [104, 11112], seed=0)
    assert mixed.distinct_ports == 3
    assert {e.port for e in mixed} == {104, 11112, 5000}
