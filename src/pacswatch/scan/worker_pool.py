"""`--workers N`: the probing spread over N processes (scan/worker_main.py), one core each.

One Python process probes on one core at most. With workers, this process keeps everything
else: it walks the plan (blocked endpoints never leave it), hands each endpoint to the worker
with the least work in flight, and takes the records back in completion order through the same
`on_record` as a one-process scan, so output, store, resume and progress are unchanged. Each
worker gets an equal share of the rate and of the concurrency; a bounded window of endpoints in
flight per worker keeps memory flat and lets Ctrl-C stop quickly.

The live opt-out list is checked here as each endpoint is handed over, and sent to the workers
whenever it changes (`OPTOUT` lines, every OPTOUT_LOOK seconds at most), so that they refuse an
address opted out meanwhile before each connect, as a one-process scan does: neither the
endpoints waiting in a worker's queue nor the next connection of a probe under way reach it.

A worker that dies is an error that stops the scan (WorkerFailed): what it had in flight is not
marked done, so `--resume` probes it again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Callable, Iterable, Sequence

from pacswatch.record import Record
from pacswatch.scan.runner import PlannedLike, ScanStats, blocked_record

RECORD_LINE_LIMIT = 1 << 22  # a record is a few KB; a line this long is a broken worker
QUEUED_PER_WORKER = 64
OPTOUT_LOOK = 0.5  # seconds between looks at the live opt-out list, to send the workers a change


def handover_window(concurrency: int) -> int:
    """How many endpoints a worker with `concurrency` probes may hold, probing or queued: a few
    queued beyond its probes, so that it never waits for this process to hand it the next. At
    most QUEUED_PER_WORKER: what a worker holds is probed by the opt-out list it was last sent
    (at most OPTOUT_LOOK old), not the one checked here at hand-over, and memory stays flat. The
    window was twice the concurrency (4,000 queued per worker at --concurrency 8000 with two
    workers); 64 took no speed from the internet mix (6.02-6.34 s against 5.92-6.11, two runs
    each)."""
    return concurrency + min(concurrency, QUEUED_PER_WORKER)


class WorkerFailed(RuntimeError):
    pass


class _WorkerProcess:
    def __init__(self, number: int, process: asyncio.subprocess.Process) -> None:
        self.number = number
        self.process = process
        assert process.stdin is not None and process.stdout is not None  # made with PIPE
        self.stdin: asyncio.StreamWriter = process.stdin
        self.stdout: asyncio.StreamReader = process.stdout
        self.in_flight = 0
        self.stderr = b""

    async def read_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            self.stderr = (self.stderr + chunk)[-4096:]  # the end says why it died

    async def failure(self) -> WorkerFailed:
        """Why it stopped: waits for its exit and its last words on stderr."""
        await self.process.wait()
        await asyncio.sleep(0.05)
        last = self.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return WorkerFailed(f"scan worker {self.number} (pid {self.process.pid}) stopped with "
                            f"exit code {self.process.returncode}: {last[0]}")


async def run_in_workers(
    planned: Iterable[PlannedLike],
    settings: dict,
    workers: int,
    *,
    on_record: Callable[[int, Record], None],
    stats: ScanStats,
    stop: asyncio.Event,
    optouts: Callable[[], Sequence[tuple[str, str]]] | None = None,
) -> ScanStats:
    """Probe every planned endpoint in `workers` processes; like runner.run_scan otherwise.

    `settings`: the scan's stored probe parameters (`probe`) and `web_ports`, and the job's
    `rate`, `concurrency` and `loop`; rate and concurrency are shared out among the workers.
    `optouts`: the live opt-out list, (address range, reason) pairs, sent to them as it changes."""
    loop = asyncio.get_running_loop()
    stats.started = loop.time()
    share = dict(settings, rate=settings["rate"] / workers, concurrency=max(1, settings["concurrency"] // workers))
    window = handover_window(share["concurrency"])
    pool: list[_WorkerProcess] = []
    room = asyncio.Event()  # set whenever a worker finishes an endpoint
    tasks: list[asyncio.Future] = []
    try:
        for number in range(workers):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pacswatch.scan.worker_main", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=RECORD_LINE_LIMIT)
            worker = _WorkerProcess(number, process)
            pool.append(worker)
            worker.stdin.write(json.dumps(share).encode() + b"\n")
            tasks.append(asyncio.ensure_future(worker.read_stderr()))

        async def collect(worker: _WorkerProcess) -> None:
            stream = worker.stdout
            while line := await stream.readline():
                index, _, data = line.partition(b"\t")
                record = Record.model_validate_json(data)
                worker.in_flight -= 1
                room.set()
                stats.add(record)
                on_record(int(index), record)
            await worker.process.wait()
            if worker.in_flight or worker.process.returncode:
                raise await worker.failure()

        collectors = [asyncio.ensure_future(collect(w)) for w in pool]
        tasks += collectors

        async def feed() -> None:
            items = iter(planned)
            while not stop.is_set():
                # Room first, then the next endpoint: drawing it checks the live opt-out list,
                # which must come right before the hand-over, not before a wait for room.
                while (worker := min(pool, key=lambda w: w.in_flight)).in_flight >= window:
                    room.clear()
                    await room.wait()
                if stop.is_set() or (item := next(items, None)) is None:
                    break
                if item.blocked_reason is not None:
                    record = blocked_record(item.ip, item.port, item.blocked_reason)
                    stats.add(record)
                    on_record(item.index, record)
                    continue
                worker.in_flight += 1
                await send(worker, b"%d %s %d\n" % (item.index, item.ip.encode("ascii"), item.port),
                           drain=worker.in_flight == window)
            for worker in pool:
                await send(worker, b"END\n", drain=True)

        async def send(worker: _WorkerProcess, line: bytes, drain: bool) -> None:
            try:
                worker.stdin.write(line)
                if drain:
                    await worker.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):  # it died: say which and why
                raise await worker.failure() from None

        async def send_optouts(look: Callable[[], Sequence[tuple[str, str]]]) -> None:
            # Until every worker is done (cancelled then), also after END: their endpoints
            # already handed over are still to be probed.
            sent = list(look())  # the plan refuses these already: only a change is sent
            while True:
                await asyncio.sleep(OPTOUT_LOOK)
                if (now := list(look())) != sent:
                    line = b"OPTOUT " + json.dumps(now).encode() + b"\n"
                    for worker in pool:
                        if worker.process.returncode is None:
                            try:
                                worker.stdin.write(line)
                            except (BrokenPipeError, ConnectionResetError):
                                pass  # it has ended: its collector says how
                    sent = now

        feeder = asyncio.ensure_future(feed())
        tasks.append(feeder)
        if optouts is not None:
            tasks.append(asyncio.ensure_future(send_optouts(optouts)))
        # The first failure (a worker died, or our own bug) ends the scan; so does the end of
        # every worker's records.
        done, _ = await asyncio.wait([feeder, *collectors], return_when=asyncio.FIRST_EXCEPTION)
        for finished in done:
            if (error := finished.exception()) is not None:
                raise error
        await asyncio.gather(*collectors)
    finally:
        for task in tasks:
            task.cancel()
        for worker in pool:
            if worker.process.returncode is None:
                worker.process.kill()  # interrupted or failed: what it had in flight is not done
        for worker in pool:
            await worker.process.wait()
    return stats
