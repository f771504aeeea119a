import threading
import time

import psutil
import pytest

from pacswatch.lab import Lab

from labhelpers import fresh_base, record_from_expected  # noqa: F401 (shared with the tests)

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
