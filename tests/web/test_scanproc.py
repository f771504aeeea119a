"""web/scanproc.py: the dashboard signals only a running pacswatch scan of this machine; any other
process a stored pid may name now (the scan died, its pid was reused) is left alone."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from pacswatch.campaign.scanrun import process_alive
from pacswatch.web import scanproc


def _scan(pid: int | None, *, status: str = "running", host: str | None = None) -> dict:
    return {"id": 7, "status": status, "pid": pid, "host": host or socket.gethostname()}


def test_only_a_running_pacswatch_scan_of_this_machine_is_signalled():
    with pytest.raises(ValueError, match="is interrupted, not running"):
        scanproc.stop(_scan(1, status="interrupted"))
    with pytest.raises(ValueError, match="runs on elsewhere.example: stop it there"):
        scanproc.stop(_scan(1, host="elsewhere.example"))
    other = subprocess.Popen(["sleep", "30"])  # a process that is not a scan, under a stored pid
    try:
        with pytest.raises(ValueError, match="is gone"):
            scanproc.stop(_scan(other.pid))
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()
    assert not process_alive(other.pid)
    with pytest.raises(ValueError, match="is gone"):
        scanproc.stop(_scan(other.pid))
    with pytest.raises(ValueError, match="is gone"):
        scanproc.stop(_scan(None))


def test_alive_tells_a_running_process_from_an_ended_one():
    process = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(process.pid)
    finally:
        process.kill()
    deadline = time.monotonic() + 5  # the signal takes a moment; then a zombie until reaped: ended
    while process_alive(process.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.wait()
    assert not process_alive(process.pid) and not process_alive(None)
