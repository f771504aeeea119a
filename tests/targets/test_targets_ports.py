"""Port lists."""

from __future__ import annotations

import pytest

from pacswatch.targets import DEFAULT_DICOM_PORTS, PortError, parse_port, parse_ports


def test_default_ports_in_order_of_likelihood() -> None:
    assert DEFAULT_DICOM_PORTS == (104, 11112, 4242, 2761, 2762, 4006, 3004, 3010, 4096, 5678, 2350, 111)
    assert len(set(DEFAULT_DICOM_PORTS)) == len(DEFAULT_DICOM_PORTS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("104", (104,)),
        ("104,11112,4000-4003", (104, 11112, 4000, 4001, 4002, 4003)),
        (" 104 , 11112 ", (104, 11112)),
        ("4003-4003", (4003,)),
        ("11112,104,104,103-105", (11112, 104, 103, 105)),  # order kept, repeats dropped
        ("dicom", DEFAULT_DICOM_PORTS),
        ("8042,DEFAULT", (8042, *DEFAULT_DICOM_PORTS)),
        ("1,65535", (1, 65535)),
    ],
)
def test_valid_port_lists(spec: str, expected: tuple[int, ...]) -> None:
    assert parse_ports(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty port list"),
        (" , ", "empty port list"),
        ("0", "'0': port 0 is outside 1-65535"),
        ("65536", "outside 1-65535"),
        ("abc", "'abc': a port is a number"),
        ("+104", "a port is a number"),
        ("1_04", "a port is a number"),
        ("١٠٤", "a port is a number"),  # Arabic-Indic digits, which int() would accept
        ("10-5", "'10-5': range ends before it starts"),
        ("104,,105", "empty item"),
        ("4000-", "a port is a number"),
        ("-4000", "a port is a number"),
    ],
)
def test_invalid_port_lists(spec: str, fragment: str) -> None:
    with pytest.raises(PortError) as info:
        parse_ports(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_every_bad_item_is_named() -> None:
    with pytest.raises(PortError) as info:
        parse_ports("104,0,x,9-1")
    message = str(info.value)
    assert "'0'" in message and "'x'" in message and "'9-1'" in message and "'104'" not in message


def test_parse_port() -> None:
    assert parse_port(" 4242 ") == 4242
    with pytest.raises(ValueError):
        parse_port("70000")
