"""Blocklist (defaults, --exclude files) and Scope."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.targets import BlockEntry, Blocklist, Scope, TargetError, load_exclude_file
from pacswatch.targets._intervals import LabelledIndex

DEFAULT = Blocklist.default()


@pytest.mark.parametrize(
    ("ip", "fragment"),
    [
        ("192.0.2.5", "RFC 5737"),
        ("198.51.100.1", "TEST-NET-2"),
        ("203.0.113.255", "TEST-NET-3"),
        ("0.1.2.3", "this network"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.254", "reserved"),
        ("255.255.255.255", "limited broadcast"),  # narrowest entry wins over 240.0.0.0/4
        ("::", "unspecified"),
        ("ff02::1", "IPv6 multicast"),
        ("2001:db8::1", "RFC 3849"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.0.1", "IPv4 link-local"),
        ("fe80::1", "IPv6 link-local"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:169.254.169.254", "embeds a blocked IPv4 address: 169.254.0.0/16"),
        ("::ffff:192.0.2.5", "embeds a blocked IPv4 address: 192.0.2.0/24"),
        ("64:ff9b::c000:205", "embeds a blocked IPv4 address: 192.0.2.0/24"),  # NAT64
    ],
)
def test_default_blocks(ip: str, fragment: str) -> None:
    reason = DEFAULT.reason_for(ip)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    "ip",
    ["127.0.0.5", "127.255.255.254", "10.1.2.3", "172.16.0.1", "192.168.1.1", "192.0.1.255",
     "192.0.3.0", "223.255.255.255", "::1", "fd00::1", "fd00:ec2::253", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2001:db9::1"],
)
def test_loopback_and_private_are_not_blocked_by_default(ip: str) -> None:
    assert DEFAULT.reason_for(ip) is None


def test_reason_for_accepts_objects_and_keys() -> None:
    assert DEFAULT.reason_for(IPv4Address("192.0.2.5")) == DEFAULT.reason_for("192.0.2.5")
    assert DEFAULT.reason_for(IPv6Address("::1")) is None
    assert DEFAULT.reason_for_key(4, int(IPv4Address("224.0.0.1"))) is not None
    assert Blocklist().reason_for("192.0.2.5") is None  # an empty blocklist blocks nothing


def test_exclude_file(tmp_path) -> None:
    path = tmp_path / "opt-out.txt"
    path.write_text(
        "# owners who asked not to be scanned\n"
        "10.20.0.0/16   # Example Hospital, ticket 123\n"
        "\n"
        "10.30.0.5\n"
        "10.40.0.1-10.40.0.9\n"
        "10.50.0.1-3 # short form\n"
        "2001:db8:1::/48\n"
    )
    bl = DEFAULT.with_file(path)
    assert bl.reason_for("10.20.7.7") == f"excluded by {path} line 2: Example Hospital, ticket 123"
    assert bl.reason_for("10.30.0.5") == f"excluded by {path} line 4"
    assert bl.reason_for("10.30.0.6") is None
    assert bl.reason_for("10.40.0.9") is not None and bl.reason_for("10.40.0.10") is None
    assert bl.reason_for("10.50.0.3") == f"excluded by {path} line 6: short form"
    assert "line 7" in bl.reason_for("2001:db8:1::5")
    assert bl.reason_for("192.0.2.1") is not None  # defaults kept
    assert DEFAULT.reason_for("10.20.7.7") is None  # the original is unchanged
    assert len(bl) == len(DEFAULT) + 5


def test_exclude_file_errors_all_reported_with_lines(tmp_path) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("10.0.0.1\nhospital.example\n10.0.0.1/8\n10.0.0.1:104\n")
    with pytest.raises(TargetError) as info:
        load_exclude_file(path)
    assert [(p.source, p.line) for p in info.value.problems] == [(str(path), 2), (str(path), 3), (str(path), 4)]
    with pytest.raises(TargetError, match="cannot read"):
        load_exclude_file(tmp_path / "missing.txt")


def test_narrowest_reason_wins_regardless_of_order() -> None:
    wide = BlockEntry((4, 0, 255), "wide")
    narrow = BlockEntry((4, 10, 20), "narrow")
    for entries in ([wide, narrow], [narrow, wide]):
        bl = Blocklist(entries)
        assert [bl.reason_for_key(4, v) for v in (9, 10, 20, 21)] == ["wide", "narrow", "narrow", "wide"]


spans = st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda t: (4, t[0], t[0] + t[1]))


@given(st.lists(spans, max_size=10))
def test_labelled_index_matches_naive(items: list[tuple[int, int, int]]) -> None:
    entries = [(span, f"e{k}") for k, span in enumerate(items)]
    index = LabelledIndex(entries)
    for value in range(0, 90):
        covering = [(s[2] - s[1], k) for k, (s, _) in enumerate(entries) if s[1] <= value <= s[2]]
        expected = f"e{min(covering)[1]}" if covering else None
        assert index.label_for(4, value) == expected
        assert index.label_for(6, value) is None


# --- scope ----------------------------------------------------------------------------------


def test_scope_allows_inside_and_refuses_outside_with_reason() -> None:
    scope = Scope.from_specs(["127.0.0.0/8", "10.0.0.1-10.0.0.5", "::1"])
    assert scope.reason_for("127.1.2.3") is None
    assert scope.reason_for("10.0.0.5") is None
    assert scope.reason_for("::1") is None
    assert scope.reason_for("10.0.0.6") == "outside the configured scope"
    assert scope.reason_for("::2") == "outside the configured scope"
    assert scope.reason_for("::ffff:127.0.0.1") is None  # reaches 127.0.0.1
    assert scope.reason_for("64:ff9b::a00:1") is not None  # NAT64 does not widen the scope


def test_empty_scope_refuses_everything() -> None:
    assert Scope([]).reason_for("127.0.0.1") is not None


def test_scope_from_file_and_errors(tmp_path) -> None:
    path = tmp_path / "authorised.txt"
    path.write_text("# contract 42\n10.0.0.0/8\n")
    scope = Scope.from_file(path)
    assert scope.reason_for("10.9.9.9") is None
    assert scope.reason_for("11.0.0.1") == f"outside the scope in {path}"
    path.write_text("10.0.0.0/8\nnot-an-ip\n10.0.0.0/33\n")
    with pytest.raises(TargetError) as info:
        Scope.from_file(path)
    assert [p.line for p in info.value.problems] == [2, 3]
    with pytest.raises(TargetError) as info:
        Scope.from_specs(["10.0.0.0/8", "bad"])
    assert info.value.problems[0].line == 2
