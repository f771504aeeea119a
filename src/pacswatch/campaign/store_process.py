"""Storing a scan's records in a process of its own, when there is a core for it.

The store thread (scanrun.StoreSink) shares the scanner's GIL: on the benchmark it costs about a
third of the scan's time, the scanner waiting while SQLAlchemy plans and binds. Here the same
sink hands each batch to a child process (`python -m pacswatch.campaign.store_process`) as JSON
lines on a pipe, and the child runs the very same `Repository.ingest`. The parent's thread only
serialises and writes to the pipe.

What does not change: records reach the child only once the output showing them is flushed (the
sink's `release`), so the database never counts an endpoint done that the output lacks; the
child dies with the parent (PR_SET_PDEATHSIG): a killed scan leaves exactly what its committed
batches hold, as with the thread, so `--resume` never races a child still writing; a child that
fails stops the scan with its error. Ctrl-C at the terminal reaches the child too: it ignores
it and finishes when the parent closes the pipe.

Used when the machine has two cores or more and the database is not in memory
(`PACSWATCH_STORE_PROCESS=0` keeps the thread, for comparisons).

Child protocol, on stdin: one line of JSON settings, then `INDEX<TAB>RECORD-JSON` lines (INDEX -1:
none); end of input is the end. It answers `STORED <count>` on stdout and exits 0 when everything
it read is stored (the parent checks the count), 1 with the error on stderr otherwise.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from pacswatch.campaign.scanrun import HEARTBEAT, StoreSink
from pacswatch.campaign.schedule import RescanPolicy
from pacswatch.record import Record
from pacswatch.store.errors import StoreError
from pacswatch.store.repository import Repository


def suitable(repo: Repository) -> bool:
    """A core to spare, a database another process can open, and not turned off."""
    if os.environ.get("PACSWATCH_STORE_PROCESS", "1") == "0" or (os.cpu_count() or 1) < 2:
        return False
    url = repo.engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


class StoreProcess(StoreSink):
    """StoreSink's interface and hand-over; the writing is done by a child process."""

    def start(self) -> "StoreProcess":
        settings = {
            "url": self.repo.engine.url.render_as_string(hide_password=False),
            "scan_id": self.scan_id,
            "keep_all": self.keep_all,
            "batch": self.batch,
            "flush_interval": self.flush_interval,
            "intervals": {name: value.total_seconds() for name, value in self.policy.intervals.items()},
            "fixed_window": self.policy.fixed_window.total_seconds(),
            "parent": os.getpid(),
        }
        self._stderr = tempfile.TemporaryFile()  # read after the end: a pipe nobody reads could block it
        self._child = subprocess.Popen(
            [sys.executable, "-m", "pacswatch.campaign.store_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, close_fds=True,
        )
        self._pipe = self._child.stdin
        self._pipe.write(json.dumps(settings).encode() + b"\n")
        self._pipe.flush()
        return super().start()

    def _write(self, items: list[tuple[int | None, Record]]) -> None:
        # The thread's job here is only this; a failed write (the child is gone) is kept as the
        # sink's error like a failed ingest, and close() says why the child went.
        lines = b"".join(b"%d\t%s\n" % (-1 if index is None else index, record.model_dump_json().encode())
                         for index, record in items)
        try:
            self._pipe.write(lines)
            self._pipe.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise StoreError(f"the store process is gone: {self._child_error() or exc}") from None
        for index, _ in items:
            if index is not None:
                self.done.add(index)
        self.written += len(items)

    def _heartbeat(self) -> None:
        pass  # the child keeps the scan alive in the database, with its own writes

    def close(self) -> None:
        try:
            super().close()
        finally:
            try:
                self._pipe.close()
            except OSError:
                pass
            said = self._child.stdout.read().decode(errors="replace").split()  # one line, at its end
            code = self._child.wait()
        if code != 0 and self.error is None:
            raise StoreError(f"records could not be stored: {self._child_error() or f'store process exit {code}'}")
        # Its own count of what it stored, against what it was given: a record lost between the
        # two processes must not pass for stored (the database would count it done).
        if self.error is None and said != ["STORED", str(self.written)]:
            raise StoreError(f"the store process stored {' '.join(said[1:]) or 'nothing'} of {self.written} records")

    def _child_error(self) -> str:
        if self._child.poll() is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"store process exit {self._child.returncode}"


# ------------------------------------------------------------------ the child


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL when the parent dies, so nothing is written after a killed scan."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the end of input still ends the child
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _take_lines(buffer: bytes, items: list) -> bytes:
    """Parse the whole `INDEX<TAB>JSON` lines of `buffer` into `items`; returns the rest."""
    *lines, rest = buffer.split(b"\n")
    for line in lines:
        index, _, text = line.partition(b"\t")
        number = int(index)
        items.append((None if number < 0 else number, Record.model_validate_json(text)))
    return rest


def child_main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C, then closes the pipe
    fd = sys.stdin.buffer.fileno()
    buffer = b""
    while b"\n" not in buffer:
        chunk = os.read(fd, 65536)
        if not chunk:
            return 0  # the parent went before saying anything
        buffer += chunk
    head, _, buffer = buffer.partition(b"\n")
    settings = json.loads(head)
    _die_with_parent(settings["parent"])
    policy = RescanPolicy(intervals={k: timedelta(seconds=v) for k, v in settings["intervals"].items()},
                          fixed_window=timedelta(seconds=settings["fixed_window"]))
    scan_id, batch, keep_all = settings["scan_id"], settings["batch"], settings["keep_all"]
    with Repository.open(settings["url"]) as repo:
        done = repo.completed(scan_id)
        items: list[tuple[int | None, Record]] = []
        buffer = _take_lines(buffer, items)  # what came with the settings
        quiet_since = time.monotonic()
        stored = 0
        ended = False
        while not ended or items:
            if not ended:
                ready, _, _ = select.select([fd], [], [], settings["flush_interval"])
                if ready:
                    chunk = os.read(fd, 1 << 20)
                    if chunk:
                        buffer = _take_lines(buffer + chunk, items)
                        if len(items) < batch:
                            continue  # more may be on its way: write full batches
                    else:
                        ended = True
            if items:
                for start in range(0, len(items), batch):
                    part = items[start : start + batch]
                    for index, _ in part:
                        if index is not None:
                            done.add(index)
                    repo.ingest(scan_id, part, work=done, policy=policy, keep_all=keep_all)
                    stored += len(part)
                items = []
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= HEARTBEAT:
                repo.heartbeat(scan_id)
                quiet_since = time.monotonic()
    sys.stdout.write(f"STORED {stored}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(child_main())
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the scan
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
