"""A probing worker process for `pacswatch scan --workers N` (see scan/worker_pool.py).

    python -m pacswatch.scan.worker_main     (started by the scan, never by hand)

stdin:  one JSON line of settings (the scan's probe parameters, web ports, rate, concurrency,
        event loop), then one line `INDEX IP PORT` per endpoint to probe, then `END`; and
        whenever the live opt-out list changed, also after `END` while endpoints already here
        are probed, `OPTOUT JSON`: [[address range, reason], ...], refused from then on before
        every connect.
stdout: one line `INDEX<TAB>RECORD-JSON` per probed endpoint, in completion order.

It holds no database and no output file: the scan process that started it stores and writes
every record, so resume, opt-outs and the progress bar work as with one process. End of input
without `END` means the scan process died: the worker stops at once. Ctrl-C at the terminal
reaches the whole process group; the scan process decides what happens, so this one ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

END = b"END"
OPTOUT = b"OPTOUT "


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The settings line is read without Python's buffered stdin: a buffered read would take
    # endpoint lines with it, out of reach of the event loop's pipe reader.
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            return 1  # the scan process is gone before saying anything
        line += byte
    settings = json.loads(line)
    from pacswatch.scan.eventloop import run_event_loop

    return run_event_loop(_serve(settings), settings.get("loop", "auto"))


async def _serve(settings: dict) -> int:
    from pacswatch.net.limits import RateLimiter
    from pacswatch.probes.base import Endpoint, ProbeContext
    from pacswatch.probes.registry import ProbeSelector, probe_options, probe_settings
    from pacswatch.scan.runner import probe_endpoint

    options = probe_options(probe_settings(settings["probe"]))
    selector = ProbeSelector.for_web_ports(settings.get("web_ports"))
    loop = asyncio.get_running_loop()
    concurrency = max(1, int(settings["concurrency"]))
    rate = float(settings["rate"])
    limiter = RateLimiter(rate, burst=max(1, min(concurrency, int(rate))))
    ctx = ProbeContext(options, limiter)
    reader = asyncio.StreamReader(limit=1 << 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * concurrency)
    finished = False  # the scan process said END (not merely gone)

    async def feed() -> None:
        # After END it goes on reading: a change of the opt-out list may still come while the
        # endpoints already here are probed.
        nonlocal finished
        while line := await reader.readline():
            line = line.strip()
            if line.startswith(OPTOUT):
                limiter.refuse = _refusal(json.loads(line[len(OPTOUT):]))
            elif line == END:
                finished = True
                for _ in range(concurrency):
                    await queue.put(None)
            elif not finished:
                index, ip, port = line.split()
                await queue.put((int(index), ip.decode("ascii"), int(port)))

    async def probe() -> None:
        while (item := await queue.get()) is not None:
            index, ip, port = item
            record = await probe_endpoint(selector.probe_for(port), ctx, Endpoint(ip, port))
            out.write(b"%d\t%s\n" % (index, record.model_dump_json().encode()))
            if queue.empty():
                out.flush()  # nothing more to do right now: let the scan process have it

    feeder: asyncio.Future[Any] = asyncio.ensure_future(feed())
    probes: asyncio.Future[Any] = asyncio.gather(*(probe() for _ in range(concurrency)))
    await asyncio.wait([feeder, probes], return_when=asyncio.FIRST_COMPLETED)
    if feeder.done() and not finished:  # the scan process is gone: nobody will read what we find
        probes.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probes
        feeder.result()  # a line we could not read is an error to report
        return 1
    await probes
    feeder.cancel()
    out.flush()
    return 0


def _refusal(pairs: list[list[str]]):
    """The limiter's `refuse` for the opt-out list the scan process sent (None when empty)."""
    if not pairs:
        return None
    from pacswatch.targets.blocklist import BlockEntry, Blocklist
    from pacswatch.targets.parse import parse_address_range

    return Blocklist(BlockEntry(parse_address_range(cidr), reason) for cidr, reason in pairs).reason_for


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the scan process stopped reading
        sys.exit(1)
