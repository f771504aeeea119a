"""Target spec parsing. No test resolves a name through DNS: names go through a fake resolver,
except `localhost`, which only ever means loopback."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pacswatch.targets import (
    Endpoint,
    TargetError,
    parse_address_range,
    parse_spec,
    parse_targets,
    system_resolver,
)

FAKE_DNS = {
    "pacs.example.org": ["192.0.2.7", "2001:db8::7"],
    "pacs-01.example.org": ["198.51.100.1"],
    "lab.test": ["127.0.0.1"],
}


def fake_resolver(name: str) -> list[str]:
    try:
        return FAKE_DNS[name]
    except KeyError:
        raise OSError(-2, "Name or service not known") from None


def parse(*specs: str, **kw):
    return parse_targets(list(specs), resolver=fake_resolver, **kw)


def addresses(ts) -> list[str]:
    return [str(ts.address_at(i)) for i in range(ts.size)]


# --- valid forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("192.0.2.7", ["192.0.2.7"]),
        ("  192.0.2.7  ", ["192.0.2.7"]),
        ("2001:db8::7", ["2001:db8::7"]),
        ("192.0.2.8/30", ["192.0.2.8", "192.0.2.9", "192.0.2.10", "192.0.2.11"]),
        ("192.0.2.7/32", ["192.0.2.7"]),
        ("2001:db8::/127", ["2001:db8::", "2001:db8::1"]),
        ("192.0.2.10-192.0.2.12", ["192.0.2.10", "192.0.2.11", "192.0.2.12"]),
        ("192.0.2.10-12", ["192.0.2.10", "192.0.2.11", "192.0.2.12"]),
        ("192.0.2.10 - 11", ["192.0.2.10", "192.0.2.11"]),
        ("192.0.2.10-10", ["192.0.2.10"]),
        ("2001:db8::fe-2001:db8::101", ["2001:db8::fe", "2001:db8::ff", "2001:db8::100", "2001:db8::101"]),
        ("192.0.2.255-198.51.100.0", None),  # a long range across /8s: only its size is checked
        ("pacs.example.org", ["192.0.2.7", "2001:db8::7"]),
        ("pacs-01.example.org", ["198.51.100.1"]),  # a hyphen does not make it a range
        ("[2001:db8::7]", ["2001:db8::7"]),
    ],
)
def test_valid_address_forms(spec: str, expected: list[str] | None) -> None:
    ts = parse(spec)
    if expected is None:
        assert ts.size == int(IPv4Address("198.51.100.0")) - int(IPv4Address("192.0.2.255")) + 1
    else:
        assert addresses(ts) == expected
    assert ts.pinned == ()


@pytest.mark.parametrize(
    ("spec", "ip", "port", "hostname"),
    [
        ("192.0.2.7:4242", "192.0.2.7", 4242, None),
        ("[2001:db8::7]:11112", "2001:db8::7", 11112, None),
        ("lab.test:104", "127.0.0.1", 104, "lab.test"),
    ],
)
def test_pinned_port(spec: str, ip: str, port: int, hostname: str | None) -> None:
    ts = parse(spec)
    assert ts.size == 0
    assert ts.pinned == (Endpoint(ip_address(ip), port, hostname),)
    assert bool(ts)


def test_name_with_port_pins_every_address() -> None:
    ts = parse("pacs.example.org:104")
    assert [str(e) for e in ts.pinned] == ["192.0.2.7:104", "[2001:db8::7]:104"]


def test_same_pinned_endpoint_twice_is_kept_once() -> None:
    ts = parse("127.0.0.1:104", "lab.test:104", "127.0.0.1:105")
    assert [str(e) for e in ts.pinned] == ["127.0.0.1:104", "127.0.0.1:105"]


def test_overlaps_are_merged_and_counted_once() -> None:
    ts = parse("10.0.0.0/24", "10.0.0.128/25", "10.0.0.5", "10.0.1.0-10.0.1.3", "10.0.0.250-10.0.1.1")
    assert ts.size == 256 + 4
    assert [(str(a), str(b)) for a, b in ts.ranges()] == [("10.0.0.0", "10.0.1.3")]


def test_ipv4_first_then_ipv6_each_ascending() -> None:
    ts = parse("2001:db8::1", "198.51.100.1", "::1", "127.0.0.1")
    assert addresses(ts) == ["127.0.0.1", "198.51.100.1", "::1", "2001:db8::1"]


def test_huge_sets_are_not_materialised() -> None:
    ts = parse("10.0.0.0/8", "2001:db8::/96", "0.0.0.0/1", max_addresses=None)
    assert ts.size == 2**31 + 2**32  # 10/8 is inside 0/1
    assert ts.address_at(0) == IPv4Address("0.0.0.0")
    assert ts.address_at(2**31 - 1) == IPv4Address("127.255.255.255")
    assert ts.address_at(2**31) == IPv6Address("2001:db8::")
    assert ts.address_at(ts.size - 1) == IPv6Address("2001:db8::ffff:ffff")
    assert "10.200.3.4" in ts and "128.0.0.1" not in ts and IPv6Address("2001:db8::5") in ts
    with pytest.raises(IndexError):
        ts.address_at(ts.size)
    with pytest.raises(IndexError):
        ts.address_at(-1)


def test_networks_summarise_ranges() -> None:
    ts = parse("192.0.2.10-20")
    assert [str(n) for n in ts.networks()] == [
        "192.0.2.10/31",
        "192.0.2.12/30",
        "192.0.2.16/30",
        "192.0.2.20/32",
    ]


def test_hostnames_are_remembered() -> None:
    ts = parse("pacs.example.org", "192.0.2.8")
    assert ts.hostname_for("192.0.2.7") == "pacs.example.org"
    assert ts.hostname_for(IPv6Address("2001:db8::7")) == "pacs.example.org"
    assert ts.hostname_for("192.0.2.8") is None


def test_parse_spec_shapes() -> None:
    assert parse_spec("192.0.2.0/31").span == (4, int(IPv4Address("192.0.2.0")), int(IPv4Address("192.0.2.1")))
    assert parse_spec("example.org").name == "example.org"
    assert parse_spec("example.org.").name == "example.org."
    assert parse_spec("bücher.example").name == "xn--bcher-kva.example"
    assert parse_spec("[::1]:104").port == 104


# --- invalid forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("300.1.1.1", "not a valid IPv4 address"),
        ("10.1", "not a valid IPv4 address"),  # inet_aton would read 10.0.0.1
        ("192.0.2.1.5", "not a valid IPv4 address"),
        ("0177.0.0.1", "not a valid IPv4 address"),  # octal, not a name
        ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
        ("192.0.2.0/33", "not a network"),
        ("2001:db8::/129", "not a network"),
        ("192.0.2.0/", "not a network"),
        ("2001:db8::1/64", "did you mean 2001:db8::/64"),
        ("192.0.2.20-192.0.2.10", "before it starts"),
        ("192.0.2.20-10", "before it starts"),
        ("192.0.2.10-256", "not an octet"),
        ("192.0.2.10-", "not an IPv4 or IPv6 address"),
        ("192.0.2.10-x", "not an IPv4 or IPv6 address"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("2001:db8::1-ff", "full end address"),
        ("2001:db8::zz", "not an IPv4 or IPv6 address"),
        ("a..b", "not an address, network, range or host name"),
        ("-bad.example", "not an address, network, range or host name"),
        ("bad-.example", "not an address, network, range or host name"),
        ("has space.example", "not an address, network, range or host name"),
        ("a," * 3 + "b", "not an address, network, range or host name"),
        ("x" * 64 + ".example", "not an address, network, range or host name"),
        ("192.0.2.7:0", "outside 1-65535"),
        ("192.0.2.7:65536", "outside 1-65535"),
        ("192.0.2.7:", "a port is a number"),
        ("192.0.2.7:+104", "a port is a number"),
        ("192.0.2.0/24:104", "one host only"),
        ("192.0.2.1-5:104", "one host only"),
        ("[192.0.2.7]:104", "IPv6 addresses only"),
        ("[2001:db8::7]104", "expected [IPv6]"),
        ("[2001:db8::7", "expected [IPv6]"),
        ("[nope]:104", "not an IPv4 or IPv6 address"),
    ],
)
def test_invalid_specs(spec: str, reason: str) -> None:
    with pytest.raises(TargetError) as info:
        parse(spec)
    (problem,) = info.value.problems
    assert reason in problem.reason
    assert problem.line == 1 and problem.text == spec
    assert isinstance(info.value, ValueError)


def test_all_bad_arguments_reported_together() -> None:
    with pytest.raises(TargetError) as info:
        parse("192.0.2.1", "300.1.1.1", "192.0.2.0/24", "10.1.2.3/8")
    assert [p.line for p in info.value.problems] == [2, 4]
    text = str(info.value)
    assert text.startswith("2 bad target specs")
    assert "argument 2: '300.1.1.1'" in text and "argument 4: '10.1.2.3/8'" in text


def test_limit_on_total_addresses() -> None:
    with pytest.raises(TargetError, match="more than the limit"):
        parse("2001:db8::/64")  # default limit 2**32
    with pytest.raises(TargetError, match="more than the limit of 1000"):
        parse("10.0.0.0/22", max_addresses=1000)
    assert parse("2001:db8::/64", max_addresses=None).size == 2**64


# --- name resolution ------------------------------------------------------------------------


def test_resolver_failures_are_reported() -> None:
    calls: list[str] = []

    def resolver(name: str) -> list[str]:
        calls.append(name)
        table = {"empty.test": [], "junk.test": ["not-an-ip"]}
        return table[name] if name in table else fake_resolver(name)

    with pytest.raises(TargetError) as info:
        parse_targets(["missing.test", "empty.test", "junk.test", "lab.test", "missing.test:104"], resolver)
    reasons = [p.reason for p in info.value.problems]
    assert "cannot resolve missing.test: Name or service not known" in reasons[0]
    assert "resolved to no address" in reasons[1]
    assert "not an address" in reasons[2]
    assert [p.line for p in info.value.problems] == [1, 2, 3, 5]
    assert sorted(calls) == ["empty.test", "junk.test", "lab.test", "missing.test"]  # once each


def test_no_resolution_when_syntax_is_bad() -> None:
    def resolver(name: str) -> list[str]:
        raise AssertionError("must not resolve a rejected list")

    with pytest.raises(TargetError):
        parse_targets(["pacs.example.org", "300.1.1.1"], resolver)


def test_system_resolver_on_localhost_gives_loopback() -> None:
    found = system_resolver("localhost")
    assert found and all(ip_address(a).is_loopback for a in found)
    assert parse_targets(["localhost"]).size >= 1


# --- files ----------------------------------------------------------------------------------


def test_file_with_comments_blanks_and_crlf(tmp_path) -> None:
    path = tmp_path / "targets.txt"
    path.write_bytes(
        "\ufeff# hospital A\r\n\r\n192.0.2.1   # the PACS\r\n  192.0.2.8/30\r\n"
        "lab.test:104\r\n   # indented comment\r\n".encode()
    )
    ts = parse(f"@{path}", "198.51.100.9")
    assert addresses(ts) == ["192.0.2.1", "192.0.2.8", "192.0.2.9", "192.0.2.10", "192.0.2.11", "198.51.100.9"]
    assert [str(e) for e in ts.pinned] == ["127.0.0.1:104"]


def test_file_errors_name_file_and_line_and_all_are_reported(tmp_path) -> None:
    path = tmp_path / "targets.txt"
    path.write_text("192.0.2.1\n# fine\n300.1.1.1\n192.0.2.0/24\n\n10.1.2.3/8 # typo\n@other.txt\n")
    with pytest.raises(TargetError) as info:
        parse(f"@{path}", "nope..x")
    problems = info.value.problems
    assert [(p.source, p.line, p.text) for p in problems] == [
        (str(path), 3, "300.1.1.1"),
        (str(path), 6, "10.1.2.3/8"),
        (str(path), 7, "@other.txt"),
        ("command line", 2, "nope..x"),
    ]
    assert f"{path} line 6: '10.1.2.3/8': host bits set" in str(info.value)
    assert "not allowed inside a file" in problems[2].reason


def test_missing_and_undecodable_files(tmp_path) -> None:
    with pytest.raises(TargetError, match="missing.txt: cannot read: No such file"):
        parse(f"@{tmp_path / 'missing.txt'}")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"192.0.2.1 # caf\xe9\n")
    with pytest.raises(TargetError, match="latin1.txt: cannot read"):
        parse(f"@{bad}")


def test_an_empty_file_is_an_error_not_an_empty_set(tmp_path) -> None:
    # A list naming nothing is a wrong file, not a request to scan nothing (issue 12).
    path = tmp_path / "empty.txt"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(TargetError, match="empty.txt: no targets in it"):
        parse(f"@{path}")


# --- properties -----------------------------------------------------------------------------


@given(st.ip_addresses(v=4).flatmap(lambda a: st.integers(16, 32).map(lambda p: ip_network(f"{a}/{p}", strict=False))))
def test_any_ipv4_network_roundtrips(net: IPv4Network) -> None:
    ts = parse(str(net))
    assert ts.size == net.num_addresses
    assert list(ts.networks()) == [net]
    for i in (0, net.num_addresses // 2, net.num_addresses - 1):
        assert ts.address_at(i) == net[i]


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=12))
def test_union_of_ranges_matches_naive(pairs: list[tuple[int, int]]) -> None:
    base = int(IPv4Address("10.0.0.0"))
    specs = [f"{IPv4Address(base + s)}-{IPv4Address(base + s + w)}" for s, w in pairs]
    expected = sorted({base + s + k for s, w in pairs for k in range(w + 1)})
    ts = parse(*specs)
    assert [int(ts.address_at(i)) for i in range(ts.size)] == expected


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        parse_spec(text)
    except ValueError:
        pass
    try:
        parse_address_range(text)
    except ValueError:
        pass
