import itertools
import os
import threading
import time

import psutil
import pytest

from pacswatch.lab import Lab

_bases = itertools.count(1)


def fresh_base() -> str:
    """A loopback /24 of its own per lab (127.43.<n>.0), with the process id mixed in so
    parallel test runs do not meet; ports are picked free anyway (port=0)."""
    return f"127.{43 + os.getpid() % 8}.{next(_bases) % 250}.0"


@pytest.fixture(scope="module")
def lab():
    with Lab(fresh_base(), port=0, names=["all"], drip_interval=0.05, hold=60) as running:
        yield running


class ResourceSnapshot:
    """Threads and file descriptors of this process, to prove start/stop leaks nothing."""

    def __init__(self) -> None:
        # uvloop opens a process-wide pipe on first use: a one-time cost, not a leak.
        try:
            import uvloop

            uvloop.new_event_loop().close()
        except ImportError:
            pass
        self.threads = set(threading.enumerate())
        self.fds = psutil.Process().num_fds()

    def leaked(self, settle: float = 3.0) -> tuple[set, int]:
        deadline = time.monotonic() + settle
        while True:
            threads = {t for t in threading.enumerate() if t not in self.threads and t.is_alive()}
            fds = psutil.Process().num_fds() - self.fds
            if (not threads and fds <= 0) or time.monotonic() > deadline:
                return threads, fds
            time.sleep(0.05)


@pytest.fixture
def resources():
    return ResourceSnapshot()


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
