"""Run the real CLI with its stdout on a pseudo-terminal, as an operator sees it (shared by
tests/test_output_tty.py and tests/hostile/test_terminal.py)."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # Rich's colours: allowed on a terminal, stripped to read the text


def run_on_terminal(args, *, columns: int = 200, timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI with stdout on a pseudo-terminal (stderr on a pipe): (exit code, what the
    terminal showed, escapes and all, stderr). `plain()` strips Rich's colours to read it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(PACSWATCH + args, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, shown.decode().replace("\r\n", "\n"), stderr


def plain(shown: str) -> str:
    """What the terminal showed without Rich's colour sequences."""
    return SGR.sub("", shown)
