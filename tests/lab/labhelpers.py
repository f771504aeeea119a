"""Helpers shared by the lab tests (a module of its own: `conftest` names clash across folders)."""

import itertools
import os

_bases = itertools.count(1)


def fresh_base() -> str:
    """A loopback /24 of its own per lab (127.43.<n>.0), with the process id mixed in so
    parallel test runs do not meet; ports are picked free anyway (port=0)."""
    return f"127.{43 + os.getpid() % 8}.{next(_bases) % 250}.0"


def record_from_expected(expected: dict) -> dict:
    """A record-shaped dict holding exactly the expected values."""
    out: dict = {}
    for path, value in expected.items():
        if isinstance(value, dict):
            value = value.get("one_of", [value.get("at_least")])[0] if "one_of" in value else value["at_least"]
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
