"""The fast responder: a cheap DICOM acceptor listening on many (127.x.y.z, port) endpoints.

For benchmarks: one listening socket per endpoint, spread over worker processes (or one thread
in this process with `workers=0`), each an event loop of `asyncio.Protocol`s driving the
sans-IO `Acceptor`: every association is accepted (all contexts with Implicit VR LE except a
random `2.25.*` control), C-ECHO and C-FIND succeed (zero pending responses), A-RELEASE-RQ gets
A-RELEASE-RP. No pynetdicom, no thread per connection.

A worker process stops when its stdin closes: when the parent says so or dies, so no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterable, Sequence, cast

from pacswatch.lab.acceptor import Acceptor
from pacswatch.net.fdlimit import raise_soft_limit as raise_nofile_limit  # noqa: F401 (bench/ uses it from here)

IDLE_TIMEOUT = 30.0  # an association quiet this long is aborted
ARTIM = 5.0  # after A-RELEASE-RP the requestor closes; we wait this long (PS3.8 ARTIM)
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def check_loopback(ip: str) -> str:
    if ipaddress.ip_address(ip) not in LOOPBACK:
        raise ValueError(f"the lab binds to loopback (127.0.0.0/8) only, not {ip}")
    return ip


def loopback_addresses(count: int, base: str = "127.50.0.0") -> list[str]:
    """`count` loopback addresses from `base` on, skipping .0 and .255 in the last octet."""
    out: list[str] = []
    value = int(ipaddress.ip_address(check_loopback(base)))
    while len(out) < count:
        if value & 0xFF not in (0, 255):
            out.append(check_loopback(str(ipaddress.ip_address(value))))
        value += 1
    return out


class FastProtocol(asyncio.Protocol):
    __slots__ = ("transport", "acceptor", "last", "timer", "loop")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None  # set by connection_made
        self.acceptor = Acceptor()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
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
            assert self.transport is not None  # the timer starts in connection_made
            self.transport.abort()
        else:
            self.timer = self.loop.call_later(IDLE_TIMEOUT - idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None and self.timer is not None  # both set by connection_made
        self.last = self.loop.time()
        out, close = self.acceptor.receive(data)
        if out:
            transport.write(out)
        if close:
            transport.close()  # after the buffered A-ABORT is flushed
        elif self.acceptor.released:
            self.timer.cancel()
            self.timer = self.loop.call_later(ARTIM, transport.abort)

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


def _worker_main() -> None:
    """A worker process: reads its endpoints as JSON on stdin, prints one JSON line on stdout
    ({"ready": [[ip, port], ...]} or {"error": text}), serves until stdin closes."""
    spec = json.loads(sys.stdin.readline())
    endpoints = [tuple(e) for e in spec["endpoints"]]
    raise_nofile_limit(len(endpoints) + 1024)
    loop = _new_loop(spec["uvloop"])
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    stdin = sys.stdin

    def on_stdin() -> None:  # any byte or EOF (the parent closed the pipe or died): stop
        loop.remove_reader(stdin.fileno())
        stop.set()

    def ready(bound) -> None:
        sys.stdout.write(json.dumps({"ready": bound}) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        loop.add_reader(stdin.fileno(), on_stdin)
        await serve(endpoints, spec["backlog"], ready, stop)

    try:
        loop.run_until_complete(main())
    except Exception as exc:  # bind failures above all: the parent turns this into an error
        answer = {"error": f"{type(exc).__name__}: {exc}", "errno": getattr(exc, "errno", None)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    finally:
        loop.close()


# A fresh interpreter, not multiprocessing: nothing is forked from a process running threads,
# and the caller's __main__ is never re-imported (no `if __name__ == "__main__"` needed).
_WORKER_COMMAND = "from pacswatch.lab.fast import _worker_main; _worker_main()"


def _worker_env() -> dict[str, str]:
    """The caller's environment, with this copy of pacswatch first on the worker's path."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


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
        self._processes: list[subprocess.Popen[bytes]] = []
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
        result: dict[str, Any] = {}
        ready = threading.Event()

        def on_ready(bound: list[tuple[str, int]]) -> None:
            result.setdefault("bound", bound)
            ready.set()

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                await serve(self.requested, self.backlog, on_ready, self._stop)
            except Exception as exc:
                result["error"] = exc
                ready.set()

        self._thread = threading.Thread(target=loop.run_until_complete, args=(main(),),
                                        name="pacswatch-lab-fast", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("fast responder did not start")
        if "error" in result:
            raise result["error"]
        return result["bound"]

    def _start_processes(self, timeout: float) -> list[tuple[str, int]]:
        chunks = [self.requested[i::self.workers] for i in range(self.workers)]
        for chunk in chunks:
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                close_fds=True, env=_worker_env(),
            )
            self._processes.append(process)
            spec = {"endpoints": chunk, "backlog": self.backlog, "uvloop": self.use_uvloop}
            assert process.stdin is not None  # stdin=PIPE
            process.stdin.write(json.dumps(spec).encode() + b"\n")
            process.stdin.flush()
        bound: dict[tuple[str, int], tuple[str, int]] = {}
        deadline = time.monotonic() + timeout
        for process, chunk in zip(self._processes, chunks):
            answer = self._read_answer(process, deadline)
            if "ready" not in answer:
                message = answer.get("error", "fast responder worker failed")
                raise OSError(answer["errno"], message) if answer.get("errno") else OSError(message)
            bound.update(zip(chunk, (tuple(e) for e in answer["ready"])))
        return [bound[e] for e in self.requested]

    @staticmethod
    def _read_answer(process: subprocess.Popen[bytes], deadline: float) -> dict[str, Any]:
        assert process.stdout is not None  # stdout=PIPE
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"fast responder worker {process.pid} did not start")
        line = process.stdout.readline()
        if not line:
            raise OSError(f"fast responder worker {process.pid} exited with {process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

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
        for process in self._processes:
            with contextlib.suppress(OSError):
                if process.stdin is not None:  # stdin=PIPE
                    process.stdin.close()  # EOF on stdin: the worker stops
        for process in self._processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(2.0)
            if process.stdout is not None:  # stdout=PIPE
                process.stdout.close()
        self._processes.clear()
