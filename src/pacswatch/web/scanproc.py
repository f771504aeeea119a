"""Scans the dashboard starts or stops: the real `pacswatch scan` in its own process, so a scan
started from a page is the scan the command line runs (its plan under the opt-out list and
scope in the database, its stored progress, its resume), and outlives the request.

Stop: a scan is stopped as Ctrl-C stops it (SIGINT: it stops taking endpoints, stores what it
has and is marked interrupted, resumable with `scan --resume ID`). A signal reaches a process on
this machine only; a scan another host runs is stopped there (the page says so).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.engine import Engine

# Runs the command line of the Python running the dashboard (the same installation).
_ENTRY = "import sys; from pacswatch.cli import main; sys.exit(main())"


def database_url(engine: Engine) -> str:
    """The database of `engine` as --database takes it (with its password: it goes to the child
    in its environment, never on its command line, where `ps` would show it)."""
    return engine.url.render_as_string(hide_password=False)


def log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"pacswatch-web-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def start(argv: Sequence[str], engine: Engine, *, name: str) -> int:
    """Start `pacswatch ARGV...` on the dashboard's database; its pid. Its standard error goes
    to a log file named `name`; it runs in its own session (Ctrl-C on the dashboard's terminal
    is not its), and a thread reaps it when it ends."""
    env = {**os.environ, "PACSWATCH_DATABASE_URL": database_url(engine)}
    with open(log_dir() / f"{name}.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", _ENTRY, *argv], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True,
                                   close_fds=True)
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process.pid


def _is_pacswatch(pid: int) -> bool:
    """Whether `pid` is a pacswatch process (its command line names pacswatch): a stored pid may
    have been reused by another program since the scan died."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pacswatch" in cmdline


def stop(scan: Mapping) -> str:
    """Ask a running scan to stop (SIGINT); what was done, in words. ValueError when it cannot
    be stopped from here."""
    if scan["status"] != "running":
        raise ValueError(f"scan {scan['id']} is {scan['status']}, not running")
    if scan.get("host") != socket.gethostname():
        raise ValueError(f"scan {scan['id']} runs on {scan.get('host')}: stop it there (Ctrl-C, or kill -INT "
                         f"{scan.get('pid')})")
    pid = scan.get("pid")
    if not pid or not _is_pacswatch(pid):
        raise ValueError(f"scan {scan['id']}'s process ({pid}) is gone: it is stalled, resume it")
    os.kill(pid, signal.SIGINT)
    return f"sent SIGINT to scan {scan['id']} (pid {pid}): it stores what it has and stops, resumable"
