"""Open-file limits: a scan holds one socket per probe in flight, so `--concurrency` must fit.

Many systems start processes with a soft RLIMIT_NOFILE of 1024 (some of 256) under a much higher
hard limit. Without care, `--concurrency 1000` then fails most connects with EMFILE, and those
endpoints would be reported (and counted done) as errors of ours rather than probed. So a scan
first raises its soft limit as far as the hard limit allows, and when even that is too low it
lowers its concurrency to what fits and says so. The decision is a pure function; the rest reads
and sets the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from typing import Awaitable, Callable, TypeVar

try:
    import resource
except ImportError:  # not POSIX: no limit to read or raise here
    resource = None  # type: ignore[assignment]  # checked before every use

# A connect that fails for want of a descriptor (ours or the system's) says nothing about the
# target: the probe waits this long for one to be freed and tries again, until its deadline.
SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE})
SHORTAGE_WAIT = 0.02
T = TypeVar("T")


def is_shortage(exc: BaseException | None) -> bool:
    """EMFILE or ENFILE, raised directly or as the cause of a library's own error (httpcore's
    ConnectError wraps anyio's "All connection attempts failed", which wraps the OSError)."""
    for _ in range(8):  # a short chain: a loop in it must not hang us
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in SHORTAGE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


async def connect_when_free(connect: Callable[[], Awaitable[T]], short: Callable[[], None] | None = None) -> T:
    """`await connect()`, waiting for a descriptor and trying again while it fails for want of
    one (calling `short()` each time, when given); the caller's deadline (a timeout around this,
    or the probe's) bounds the wait."""
    while True:
        try:
            return await connect()
        except Exception as exc:
            if not is_shortage(exc):
                raise
        if short is not None:
            short()
        await asyncio.sleep(SHORTAGE_WAIT)


# Descriptors kept for everything that is not a probe's socket: standard streams, the database
# (SQLite's file, WAL and shared memory), the event loop's epoll, the output file, worker pipes,
# name resolution during attribution.
HEADROOM = 64


def fitting_concurrency(requested: int, limit: int, in_use: int, headroom: int = HEADROOM) -> int:
    """How many probes can hold a socket at once under `limit` descriptors, `in_use` of them
    taken already: `requested`, or fewer when it does not fit (never fewer than one)."""
    return max(1, min(requested, limit - in_use - headroom))


def open_descriptors() -> int:
    """Descriptors this process holds now (0 where that cannot be read)."""
    with contextlib.suppress(OSError):
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir opened
    return 0


def raise_soft_limit(needed: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE toward the hard limit (only when below `needed`, if given);
    returns the soft limit now in force (a large number where there is none)."""
    if resource is None:
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if (needed is None or soft < needed) and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def concurrency_that_fits(requested: int) -> tuple[int, str | None]:
    """The concurrency a scan can run with here, after raising the soft limit as needed, and a
    warning to show when that is less than `requested`."""
    in_use = open_descriptors()
    limit = raise_soft_limit(requested + in_use + HEADROOM)
    fitting = fitting_concurrency(requested, limit, in_use)
    if fitting == requested:
        return requested, None
    return fitting, (f"concurrency {requested} lowered to {fitting}: this process may open {limit} files "
                     f"(hard limit; `ulimit -Hn`), {in_use} are open and {HEADROOM} are kept for the rest")
