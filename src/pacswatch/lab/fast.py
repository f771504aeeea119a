"""The fast responder: a cheap DICOM acceptor listening on many (127.x.y.z, port) endpoints.

For benchmarks: one listening socket per endpoint, spread over worker processes (or one thread
in this process with `workers=0`), each an event loop of `asyncio.Protocol`s driving the
sans-IO `Acceptor`: every association is accepted (all contexts with Implicit VR LE except a
random `2.25.*` control), C-ECHO and C-FIND succeed (zero pending responses), A-RELEASE-RQ gets
A-RELEASE-RP. No pynetdicom, no thread per connection.

A worker stops when the parent says so or dies (its end of the pipe closes): no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import multiprocessing
import os
import resource
import socket
import threading
import time
from typing import Iterable, Sequence

from pacswatch.lab.acceptor import Acceptor

IDLE_TIMEOUT = 30.0  # an association quiet this long is aborted
ARTIM = 5.0  # after A-RELEASE-RP the requestor closes; we wait this long (PS3.8 ARTIM)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def check_loopback(ip: str) -> str:
    if ipaddress.ip_address(ip) not in LOOPBACK:
        raise ValueError(f"the lab binds to loopback (127.0.0.0/8) only, not {ip}")
    return ip


def loopback_addresses(count: int, base: str = "127.50.0.0") -> list[str]:
    """`count` loopback addresses from `base` on, skipping .0 and .255 in the last octet."""
    start = int(check_loopback(base))  if False else int(ipaddress.ip_address(check_loopback(base)))
    out = []
    value = start
    while len(out) < count:
        if value & 0xFF not in (0, 255):
            out.append(check_loopback(str(ipaddress.ip_address(value))))
        value += 1
    return out


def raise_nofile_limit(needed: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (only when below `needed`, if given)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if (needed is None or soft < needed) and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class FastProtocol(asyncio.Protocol):
    __slots__ = ("transport", "acceptor", "last", "timer", "loop")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.acceptor = Acceptor()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.timer = self.loop.call_later(IDLE_TIMEOUT, self._check_idle)

    def _check_idle(self) -> None:
        idle = self.loop.time() - self.last
        if idle >= IDLE_TIMEOUT:
            self.transport.abort()
        else:
            self.timer = self.loop.call_later(IDLE_TIMEOUT - idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.last = self.loop.time()
        out, close = self.acceptor.receive(data)
        if out:
            self.transport.write(out)
        if close:
            self.transport.close()  # after the buffered A-ABORT is flushed
        elif self.acceptor.released:
            self.timer.cancel()
            self.timer = self.loop.call_later(ARTIM, self.transport.abort)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _listen(ip: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((check_loopback(ip), port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(endpoints: Sequence[tuple[str, int]], backlog: int, ready, stop: asyncio.Event) -> None:
    """Listen on every endpoint, call `ready(bound endpoints)`, serve until `stop` is set."""
    loop = asyncio.get_running_loop()
    servers = []
    protocols: set[FastProtocol] = set()

    def factory() -> FastProtocol:
        protocol = FastProtocol()
        protocols.add(protocol)
        return protocol

    try:
        bound = []
        for ip, port in endpoints:
            sock = _listen(ip, port, backlog)
            servers.append(await loop.create_server(factory, sock=sock))
            bound.append((ip, sock.getsockname()[1]))
        ready(bound)
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.abort()
        await asyncio.sleep(0)  # let connection_lost run
        for server in servers:
            await server.wait_closed()


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _worker_main(endpoints, backlog, conn, use_uvloop) -> None:
    """Entry point of a worker process: reports ("ready", bound) or ("error", text) on `conn`."""
    raise_nofile_limit(len(endpoints) + 1024)
    loop = _new_loop(use_uvloop)
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()

    def on_pipe() -> None:  # "stop", or EOF because the parent is gone
        loop.remove_reader(conn.fileno())
        stop.set()

    async def main() -> None:
        loop.add_reader(conn.fileno(), on_pipe)
        await serve(endpoints, backlog, lambda bound: conn.send(("ready", bound)), stop)

    try:
        loop.run_until_complete(main())
    except Exception as exc:  # bind failures above all: the parent turns this into an error
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        loop.close()
        conn.close()


class FastResponder:
    """Listen on every (address, port) pair: `FastResponder(addresses, ports, workers=N)`.

    `workers=0` serves from one thread in this process (tests, small labs); `workers=None`
    picks one process per CPU, at most 8. Port 0 picks a free port per endpoint; `endpoints`
    lists what was really bound, in the order given.
    """

    def __init__(self, addresses: Iterable[str], ports: Iterable[int] = (11112,), *,
                 workers: int | None = 0, backlog: int = 128, use_uvloop: bool = True) -> None:
        ports = list(ports)
        self.requested = [(check_loopback(ip), port) for ip in addresses for port in ports]
        if workers is None:
            workers = min(8, os.cpu_count() or 1)
        self.workers = max(0, min(workers, len(self.requested)))
        self.backlog = backlog
        self.use_uvloop = use_uvloop
        self.endpoints: list[tuple[str, int]] = []
        self._processes: list[tuple[multiprocessing.Process, object]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> "FastResponder":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> list[tuple[str, int]]:
        try:
            if self.workers == 0:
                self.endpoints = self._start_thread(timeout)
            else:
                self.endpoints = self._start_processes(timeout)
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _start_thread(self, timeout: float) -> list[tuple[str, int]]:
        raise_nofile_limit(len(self.requested) + 1024)
        loop = _new_loop(self.use_uvloop)
        self._loop = loop
        result: dict = {}
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await serve(self.requested, self.backlog, lambda b: (result.setdefault("bound", b), ready.set()),
                            self._stop)
            except Exception as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
                ready.set()

        self._thread = threading.Thread(target=loop.run_until_complete, args=(main(),),
                                        name="pacswatch-lab-fast", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("fast responder did not start")
        if "error" in result:
            raise OSError(result["error"])
        return result["bound"]

    def _start_processes(self, timeout: float) -> list[tuple[str, int]]:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        chunks = [self.requested[i::self.workers] for i in range(self.workers)]
        for n, chunk in enumerate(chunks):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker_main, args=(chunk, self.backlog, child, self.use_uvloop),
                                  name=f"pacswatch-lab-fast-{n}", daemon=True)
            process.start()
            child.close()
            self._processes.append((process, parent))
        bound: dict[tuple[str, int], tuple[str, int]] = {}
        deadline = time.monotonic() + timeout
        for (process, conn), chunk in zip(self._processes, chunks):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"fast responder worker {process.name} did not start")
            try:
                status, value = conn.recv()
            except EOFError:
                raise OSError(f"fast responder worker {process.name} died") from None
            if status != "ready":
                raise OSError(value)
            bound.update(zip(chunk, value))
        return [bound[e] for e in self.requested]

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None:
            loop, stop = self._loop, self._stop
            if self._thread is not None and self._thread.is_alive() and stop is not None:
                loop.call_soon_threadsafe(stop.set)
                self._thread.join(timeout)
            if not loop.is_running():
                loop.close()
            self._loop = self._thread = self._stop = None
        deadline = time.monotonic() + timeout
        for process, conn in self._processes:
            with contextlib.suppress(OSError, ValueError):
                conn.send("stop")
        for process, conn in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
            conn.close()
            process.close()
        self._processes.clear()
