"""Which event loop runs a scan, and how: the one-process scan (scan/job.py) and each worker
process (scan/worker_main.py) start theirs here.

Kept apart from job.py so that a worker process, which draws no progress bar and prints no
table, does not import rich and the output module before its first probe (~2.6 MB and a few
milliseconds of CPU per worker).
"""

from __future__ import annotations

import asyncio
import gc


def runtime_description(event_loop: str, workers: int) -> str:
    """What a scan's speed depends on, for its first line: the event loop that `run_event_loop`
    will pick and how many processes probe."""
    loop_name = "asyncio"
    if event_loop in ("auto", "uvloop"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            loop_name = "uvloop"
    where = f"{workers} worker processes" if workers > 1 else "one process"
    return f"event loop {loop_name}, {where}"


def prepare_collector() -> None:
    """Set the cyclic garbage collector for a scan (a one-process scan and each worker call it
    before their loop starts; bench/db_bench.py too, so that the store meets the collector it
    meets in a scan)."""
    # A scan holds a thousand suspended probes and the kept records: long-lived objects the
    # cyclic GC would otherwise re-traverse every 700 allocations (~14% of a scan's CPU when
    # profiled). Freeze what exists now and collect the young generation far less often.
    # Only the young generations are collected first: a full collection here walked every
    # object the imports made (SQLAlchemy, pydantic, Alembic) for 60-90 ms of the start-up, to
    # free a few dozen; what import-time garbage the old generation holds is frozen with it.
    # A young collection walks every young object still alive, and with thousands of probes in
    # flight that is a few hundred thousand of them whenever it runs: at 100,000 allocations
    # between collections that was 0.19 CPU s of a 10,000-endpoint scan (bench/internet_mix.py,
    # timed by gc.callbacks), at 1,000,000 it is 0.02 s, for 2-5 MB more peak memory (the
    # cyclic garbage waits longer; tests/scan/test_memory_flat.py bounds it).
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(1_000_000, 50, 1000)


def run_event_loop(coro, kind: str = "auto"):
    """Run `coro` on uvloop when asked for or available (`auto`), else on asyncio's loop.

    uvloop roughly halves the event loop's own cost per connection; the protocol work is ours
    either way.
    """
    prepare_collector()
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise ValueError("--loop uvloop needs the uvloop package (pip install uvloop)") from None
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)
