"""Interruptions as a user meets them, with real signals to real CLI processes scanning loopback
servers: Ctrl-C in `probe` is one line and exit 130; Ctrl-C in `scan` names the resume command;
a scan whose process died is `stalled` in `scans`; a resume after SIGKILL probes again at most
what README promises (the endpoints in flight and the last half second's)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from test_cli_campaign import NET, Listeners

from pacswatch.campaign.scanrun import HEARTBEAT, STALE, shown_status
from pacswatch.store import Repository

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
pytestmark = pytest.mark.timeout(240)


class Tarpit(Listeners):
    """Listeners that accept and hold every connection: a probe waits out its deadlines."""

    def __init__(self, ip: str, count: int) -> None:
        self.held = []
        super().__init__(ip, count)

    def _serve(self) -> None:
        import selectors

        with selectors.DefaultSelector() as sel:
            for sock in self.socks:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.02):
                    conn, _ = key.fileobj.accept()
                    self.counts[key.fileobj.getsockname()[1]] += 1
                    self.held.append(conn)

    def close(self) -> None:
        super().close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def tarpit():
    made = []

    def make(ip, count=1):
        made.append(Tarpit(ip, count))
        return made[-1]

    yield make
    for item in made:
        item.close()


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def scans_json(database: str) -> list[dict]:
    result = subprocess.run(PACSWATCH + ["scans", "--format", "json", "--database", database], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_ctrl_c_in_probe_is_one_line_and_exit_130(tmp_path, tarpit):
    pit = tarpit(f"{NET}.70")
    (port,) = pit.counts
    proc = subprocess.Popen(PACSWATCH + ["probe", f"{NET}.70:{port}", "--timeout", "10", "--database",
                                         f"sqlite:///{tmp_path / 'p.db'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: pit.counts[port] >= 1, "the probe did not connect", proc)
        time.sleep(0.3)  # inside the association wait
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["pacswatch probe: interrupted"], stderr


def test_ctrl_c_while_a_long_target_list_is_read_is_one_line(tmp_path):
    # The list comes through a FIFO, written once the scan opens it: parsing 300,000 lines takes
    # seconds after that. (Waiting for the scan to have read as many bytes as the list has raced
    # with its start-up: its imports read more than that, and on a busy machine Ctrl-C came
    # before the list was opened.)
    targets = tmp_path / "targets.txt"
    os.mkfifo(targets)
    text = "\n".join(f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:104" for i in range(300_000))
    proc = subprocess.Popen(PACSWATCH + ["scan", f"@{targets}", "--no-progress", "--database",
                                         f"sqlite:///{tmp_path / 't.db'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    writer = None

    def opened() -> bool:  # a FIFO opens for writing (without blocking) once a reader has it open
        nonlocal writer
        try:
            writer = os.open(targets, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO, exc
            return False
        return True

    try:
        wait_for(opened, "the scan did not open its targets", proc)
        assert writer is not None
        os.set_blocking(writer, True)
        with os.fdopen(writer, "w") as fifo:
            fifo.write(text)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    expected = "pacswatch scan: interrupted while reading the targets; nothing was scanned"
    assert stderr.strip().splitlines() == [expected], stderr
    assert not (tmp_path / "t.db").exists()


def test_ctrl_c_in_scan_names_the_resume_command_and_the_resume_finishes(tmp_path, tarpit):
    pit = tarpit(f"{NET}.71", 6)
    database = f"sqlite:///{tmp_path / 's.db'}"
    ports = ",".join(map(str, pit.counts))
    proc = subprocess.Popen(PACSWATCH + ["scan", f"{NET}.71", "--ports", ports, "--timeout", "0.5", "--concurrency",
                                         "2", "--no-progress", "--no-attribute", "--quiet", "--database", database],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: sum(pit.counts.values()) >= 3, "the scan did not start", proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "endpoints left: pacswatch scan --resume 1" in stderr, stderr  # even with --quiet
    (scan,) = scans_json(database)
    assert scan["status"] == "interrupted" and scan["done"] < 6
    resumed = subprocess.run(PACSWATCH + ["scan", "--resume", "1", "--no-progress", "--no-attribute", "--database",
                                          database], capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert scans_json(database)[0]["status"] == "finished"


def test_a_killed_scan_is_stalled_at_once_and_its_resume_reprobes_at_most_the_promised_bound(tmp_path):
    concurrency, rate = 8, 20.0
    counted = Listeners(f"{NET}.72", 60)
    database = f"sqlite:///{tmp_path / 'k.db'}"
    try:
        ports = ",".join(map(str, counted.counts))
        common = ["--no-progress", "--no-attribute", "--database", database]
        proc = subprocess.Popen(PACSWATCH + ["scan", f"{NET}.72", "--ports", ports, "--seed", "3", "--timeout", "1",
                                             "--concurrency", str(concurrency), "--rate", str(rate), *common],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

        def done() -> int:
            with Repository.open(database) as repo:
                scan = repo.scan(1)
                return scan["done"] if scan else 0

        try:
            wait_for(lambda: done() >= 20, "the scan did not store 20 endpoints", proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        # Its process is gone: `scans` says so at once, without waiting for the heartbeat to age.
        (scan,) = scans_json(database)
        assert scan["status"] == "stalled", scan
        first = dict(counted.counts)
        resumed = subprocess.run(PACSWATCH + ["scan", "--resume", "1", *common], capture_output=True, text=True,
                                 timeout=120, check=False)
        assert resumed.returncode == 0, resumed.stderr
        time.sleep(0.3)  # the last connections counted
    finally:
        counted.close()
    assert all(n >= 1 for n in counted.counts.values())  # everything was probed
    # Probed again: contacted before the kill and again by the resume (a DICOM probe may make
    # more than one connection to an endpoint: a TLS try after a silent close).
    again = [port for port, n in counted.counts.items() if first[port] and n > first[port]]
    # README: at most the endpoints in flight (--concurrency) and those finished in the last half
    # second (--rate x 0.5) are probed again.
    bound = concurrency + int(rate * 0.5)
    print(f"killed at {sum(1 for n in first.values() if n)} probed: {len(again)} probed again (bound {bound})")
    assert len(again) <= bound, again
    assert scans_json(database)[0]["status"] == "finished"


def test_stalled_is_decided_by_the_heartbeat_on_another_machine():
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    row = {"status": "running", "host": "scanner-2", "pid": 1, "updated_at": now - timedelta(seconds=2)}
    assert STALE == timedelta(seconds=3 * HEARTBEAT)
    assert shown_status(row, now=now, host="here") == "running"
    assert shown_status({**row, "updated_at": now - STALE}, now=now, host="here") == "stalled"
    assert shown_status({**row, "status": "interrupted", "updated_at": now - STALE}, now=now, host="here") == \
        "interrupted"


def test_a_quiet_scan_keeps_its_heartbeat(tmp_path, tarpit):
    # Every probe waits on a tarpit far longer than STALE, so no record is stored meanwhile: only
    # the heartbeat keeps the scan from looking dead to another machine.
    pit = tarpit(f"{NET}.73")
    (port,) = pit.counts
    database = f"sqlite:///{tmp_path / 'h.db'}"
    proc = subprocess.Popen(PACSWATCH + ["scan", f"{NET}.73:{port}", "--timeout", "30", "--no-progress",
                                         "--no-attribute", "--database", database],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: pit.counts[port] >= 1, "the scan did not connect", proc)
        time.sleep(STALE.total_seconds() + 2)
        with Repository.open(database) as repo:
            row = repo.scan(1)
        assert row["done"] == 0
        assert shown_status(row, host="another machine") == "running", row["updated_at"]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
