"""Input refused before any lookup: a mistyped address is an error naming the character, a name
is looked up only when it has a dot and a letter, --no-resolve looks up nothing, and an
IPv4-mapped IPv6 address is the IPv4 address it reaches. The resolver here records every call:
no test lets a name reach the system resolver."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from pacswatch.targets import (
    TargetError,
    parse_address_range,
    parse_spec,
    parse_targets,
)


class RecordingResolver:
    """In place of the system resolver: every name asked is recorded, one name answers."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[str]:
        self.asked.append(name)
        if name == "pacs.example.org":
            return ["127.0.0.7"]
        raise OSError(-2, "Name or service not known")


@pytest.mark.parametrize("spec,char,position", [
    ("127.44.0.1O", "O", 11),             # a letter O for a zero
    ("127.42.0.1O:104", "O", 11),         # the same with a pinned port
    ("10.0.0.l", "l", 8),                 # a letter l for a one
    ("127.0.0,1", ",", 8),                # a comma for a dot
    ("1O.0.0.1", "O", 2),
    ("127.0.0.1/2x", "x", 12),            # a network with a stray character
    ("127.0.0.1-1O", "O", 2),             # a range's end (named in the end's own text)
    ("2001:db8::zz", "z", 11),            # IPv6: the first character that is not hexadecimal
])
def test_a_mistyped_address_names_the_character_and_is_not_looked_up(spec, char, position):
    resolver = RecordingResolver()
    with pytest.raises(TargetError) as info:
        parse_targets([spec], resolver=resolver)
    (problem,) = info.value.problems
    assert f"{char!r} at position {position}" in problem.reason, problem.reason
    assert "not looked up" in problem.reason
    assert resolver.asked == []


@pytest.mark.parametrize("spec,reason", [("pacs", "no dot"), ("PACS01", "no dot"), ("archive_1", "no dot"),
                                         ("1-2.3-4", "a name has a letter"), ("12-34.5-6", "a name has a letter")])
def test_a_name_without_a_dot_or_a_letter_is_refused_without_a_lookup(spec, reason):
    resolver = RecordingResolver()
    with pytest.raises(TargetError) as info:
        parse_targets([spec], resolver=resolver)
    assert reason in str(info.value)
    assert resolver.asked == []


@pytest.mark.parametrize("spec", ["pacs.example.org", "pacs.example.org:104"])
def test_a_name_with_a_dot_and_a_letter_is_looked_up(spec):
    resolver = RecordingResolver()
    targets = parse_targets([spec], resolver=resolver)
    assert resolver.asked == ["pacs.example.org"]
    assert "127.0.0.7" in targets or [str(ep.ip) for ep in targets.pinned] == ["127.0.0.7"]


def test_names_that_start_with_digits_are_still_names():
    resolver = RecordingResolver()
    for name in ("1und1.example.org", "10.0.0.1.nip.example", "3com.example"):
        parse_spec(name)  # a name, not a mistyped address
        with pytest.raises(TargetError):
            parse_targets([name], resolver=resolver)  # resolved (and unknown to this resolver)
    assert resolver.asked == ["1und1.example.org", "10.0.0.1.nip.example", "3com.example"]


def test_no_resolve_refuses_every_name_and_asks_nothing(tmp_path):
    listed = tmp_path / "targets.txt"
    listed.write_text("127.0.0.1\nother.example.org\n")
    resolver = RecordingResolver()
    with pytest.raises(TargetError) as info:
        parse_targets(["pacs.example.org:104", "127.0.0.2", f"@{listed}"], resolver=resolver, resolve=False)
    reasons = [(p.source, p.line, p.text) for p in info.value.problems]
    assert reasons == [("command line", 1, "pacs.example.org:104"), (str(listed), 2, "other.example.org")]
    assert all("--no-resolve" in p.reason for p in info.value.problems)
    assert resolver.asked == []
    # Addresses alone are fine without lookups.
    assert parse_targets(["127.0.0.2", "127.0.0.3:104"], resolver=resolver, resolve=False).size == 1


@pytest.mark.parametrize("spec,expected", [
    ("::ffff:127.0.0.9", ("127.0.0.9", None)),
    ("[::ffff:127.0.0.9]:104", ("127.0.0.9", 104)),
    ("::ffff:7f00:9", ("127.0.0.9", None)),
])
def test_an_ipv4_mapped_target_is_the_ipv4_address(spec, expected):
    parsed = parse_spec(spec)
    assert (str(parsed.ip), parsed.port) == expected
    assert isinstance(parsed.ip, IPv4Address)


def test_ipv4_mapped_networks_and_ranges_are_ipv4_spans():
    v4 = parse_address_range("127.0.0.0/24")
    assert parse_address_range("::ffff:127.0.0.0/120") == v4
    assert parse_address_range("::ffff:127.0.0.0-::ffff:127.0.0.255") == v4
    assert parse_targets(["::ffff:127.0.0.0/120"]).size == 256
    assert str(parse_targets(["::ffff:127.0.0.0/120"]).address_at(5)) == "127.0.0.5"
    # Outside ::ffff:0:0/96 an IPv6 span stays IPv6.
    assert parse_address_range("2001:db8::/120")[0] == 6
