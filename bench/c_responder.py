"""The C responder (bench/responder.c) from Python: build it, start it, stop it.

A drop-in for the benchmark's `pacswatch.lab.fast.FastResponder` where the responder's own CPU
matters: the same DICOM exchange on the wire, at a fraction of the cost.

    with CResponder(addresses, [104, 11112], threads=2) as responder:
        ...  # responder.endpoints, responder.pids

The process reads its endpoints on stdin, prints `READY <count>` once every one is bound, and
exits when its stdin closes: when we say so, or when this process dies (no orphans).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "responder.c"
DEFAULT_BUILD_DIR = HERE / "results" / "build"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=c11", "-D_GNU_SOURCE", "-pthread"]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def check_loopback(ip: str) -> str:
    if ipaddress.ip_address(ip) not in LOOPBACK:
        raise ValueError(f"the C responder binds to loopback (127.0.0.0/8) only, not {ip}")
    return ip


def build(out_dir: Path | None = None) -> Path:
    """Compile responder.c (once; again when the source is newer) and return the binary's path."""
    return build_c(SOURCE, out_dir)


def build_c(source: Path, out_dir: Path | None = None, cflags: list[str] = CFLAGS) -> Path:
    """Compile one of bench/'s single-file C programs into `out_dir` (default bench/results/build),
    again only when the source or a header beside it (bench/*.h) is newer; a warning fails the
    build like an error."""
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_BUILD_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / source.stem
    newest = max(path.stat().st_mtime for path in [source, *source.parent.glob("*.h")])
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError(f"gcc not found on PATH: it is needed to build {source} (Debian: apt-get install gcc)")
    # Build next to the target and rename: a concurrent caller never runs a half-written file.
    partial = out_dir / f"{source.stem}.{os.getpid()}.tmp"
    done = subprocess.run([gcc, *cflags, "-o", str(partial), str(source)], capture_output=True, text=True)
    if done.returncode != 0 or done.stderr.strip():
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"gcc did not build {source} cleanly (exit {done.returncode}):\n{done.stderr}")
    os.replace(partial, binary)
    return binary


class CResponder:
    """Listen on every (address, port) pair with the C responder: `CResponder(addresses, ports)`.

    `threads` epoll threads share the listening sockets in one process (`pids` has that one
    process, for CPU measurements; its /proc stat counts every thread). Every address must be
    loopback; ports must be fixed (1-65535). `coalesce_us` > 0 makes the responder pause that
    long after each batch of events (fewer wake-ups, less CPU, up to that much more latency per
    exchange; see responder.c).

    `behaviour`, when given, maps each endpoint (ip, port) to be bound to its responder.c
    fields `PROFILE DELAY_MS STUDIES PATIENTS`; then only those endpoints are bound (an endpoint
    left out is a closed port) and `addresses` and `ports` are ignored.
    """

    def __init__(self, addresses: Iterable[str] = (), ports: Iterable[int] = (11112,), *, threads: int = 1,
                 backlog: int = 128, coalesce_us: int = 0, binary: Path | None = None,
                 behaviour: Mapping[tuple[str, int], str] | None = None) -> None:
        if behaviour is not None:
            self.requested = [(check_loopback(ip), int(port)) for ip, port in behaviour]
            self.lines = [f"{ip} {port} {behaviour[ip, port]}\n" for ip, port in self.requested]
        else:
            ports = list(ports)
            self.requested = [(check_loopback(ip), int(port)) for ip in addresses for port in ports]
            self.lines = [f"{ip} {port}\n" for ip, port in self.requested]
        for _, port in self.requested:
            if not 1 <= port <= 65535:
                raise ValueError(f"the C responder needs a fixed port (1-65535), not {port}")
        self.threads = max(1, int(threads))
        self.backlog = backlog
        self.coalesce_us = int(coalesce_us)
        self.binary = binary
        self.endpoints: list[tuple[str, int]] = []
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._stderr = None  # a temporary file: a pipe nobody reads could block the responder

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []

    def __enter__(self) -> "CResponder":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> list[tuple[str, int]]:
        binary = self.binary or build()
        for ip, _ in self.requested:  # again, right before anything is handed to the process
            check_loopback(ip)
        try:
            self._stderr = tempfile.TemporaryFile()
            self.process = subprocess.Popen(
                [str(binary), "--threads", str(self.threads), "--backlog", str(self.backlog),
                 "--coalesce-us", str(self.coalesce_us)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, close_fds=True,
            )
            spec = "".join(self.lines) + "END\n"
            with contextlib.suppress(BrokenPipeError):  # it refused the list: its stderr says why
                self.process.stdin.write(spec.encode("ascii"))
                self.process.stdin.flush()
            line = self._read_line(timeout)
            if line != f"READY {len(self.requested)}":
                code = self.process.wait(5.0)
                raise OSError(f"C responder failed (exit {code}): {self.stderr_text() or line or 'no output'}")
        except BaseException:
            self.stop()
            raise
        self.endpoints = list(self.requested)
        return self.endpoints

    def stderr_text(self) -> str:
        """What the responder wrote on stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _read_line(self, timeout: float) -> str:
        process = self.process
        deadline = time.monotonic() + timeout
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while not data.endswith(b"\n"):
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"C responder {process.pid} did not start in {timeout} s")
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip()

    def stop(self, timeout: float = 10.0) -> None:
        """Close stdin and wait; kill after `timeout`. The stderr text stays readable."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # EOF on stdin: the responder closes everything and exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)
        with contextlib.suppress(OSError):
            process.stdout.close()
        self.returncode = process.returncode
        self.endpoints = []
