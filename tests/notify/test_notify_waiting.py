"""A message that could not be sent waits in the outbox for its next try, and nothing sends it
by itself: `notify` says so, with when to run it again, on the pass that failed and on a later
pass before the try is due (that pass used to print only 'sent 0, retrying 0'). A real scan of
the lab, a relay address where nothing listens."""

from __future__ import annotations

import os
import socket

from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import violations
from test_optout_notify import cli

from pacswatch.campaign.scope import contact_check
from pacswatch.lab import Lab
from pacswatch.notify.config import load
from pacswatch.notify.service import attribute
from pacswatch.store.repository import Repository

NET = os.getpid() % 200  # third octet: tests of other processes use other lab networks


def dead_port() -> int:
    with socket.socket() as sock:  # bound then closed: a connection there is refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_message_waiting_for_its_retry_is_named_with_its_next_try(database_url, tmp_path, capsys):
    with Lab(f"127.77.{NET}.0", port=0, names=["open-archive"]) as lab:
        config = tmp_path / "notify.toml"
        config.write_text(f'[sender]\nfrom = "notify@example.org"\n\n[smtp]\nenabled = true\nhost = "127.0.0.1"\n'
                          f'port = {dead_port()}\nsecurity = "none"\ntimeout = 2\n')
        assert cli(capsys, "owners", "add", f"127.77.{NET}.0/24", "--name", "Hospital G", "--contact",
                   "it@g.example.org", "--database", database_url)[0] == 0
        with Repository.open(database_url) as repo:
            scan_and_store(repo, lab_endpoints(lab.manifest))
            attribute(repo.engine, load(str(config)), may_contact=contact_check(repo))
        for retrying in (1, 0):
            code, out = cli(capsys, "notify", "--database", database_url, "--config", str(config))
            assert code == 0 and f"retrying {retrying}," in out, out
            (line,) = [x for x in out.splitlines() if x.startswith("waiting:")]
            assert line.startswith("waiting: case 1 initial to it@g.example.org after 1 failed attempt(s) (connect:")
            assert "Connection refused" in line and "UTC (run pacswatch notify again then)" in line
    assert violations() == []


def test_ctrl_c_while_the_relay_hangs_stops_at_once_and_the_next_pass_names_the_message(database_url, smtp_server,
                                                                                        tmp_path, capsys):
    """Ctrl-C while the relay sits on RCPT: notify stops within a second (no QUIT that waits out
    the 30 s timeout), says what happened to the messages, exits 130; the message it was sending
    is named by the next pass as in flight, with when it will be tried again."""
    import signal
    import subprocess
    import sys
    import time

    smtp_server.handler.rcpt_delays.append(60)
    with Lab(f"127.78.{NET}.0", port=0, names=["open-archive"]) as lab:
        config = tmp_path / "notify.toml"
        config.write_text(f'[sender]\nfrom = "notify@example.org"\n\n[smtp]\nenabled = true\nhost = "127.0.0.1"\n'
                          f'port = {smtp_server.port}\nsecurity = "none"\ntimeout = 30\n')
        assert cli(capsys, "owners", "add", f"127.78.{NET}.0/24", "--name", "Hospital H", "--contact",
                   "it@h.example.org", "--database", database_url)[0] == 0
        with Repository.open(database_url) as repo:
            scan_and_store(repo, lab_endpoints(lab.manifest))
            attribute(repo.engine, load(str(config)), may_contact=contact_check(repo))
        proc = subprocess.Popen([sys.executable, "-m", "pacswatch.cli", "notify", "--database", database_url,
                                 "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while smtp_server.handler.connections == 0:  # the relay has the connection, and sits on RCPT
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            _, stderr = proc.communicate(timeout=20)
            stopped_in = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr
        assert stopped_in < 3, stopped_in
        assert stderr.strip().startswith("pacswatch notify: interrupted; every message sent is recorded"), stderr
        code, out = cli(capsys, "notify", "--database", database_url, "--config", str(config))
        assert code == 0 and smtp_server.received == []
        (line,) = [x for x in out.splitlines() if x.startswith("in flight:")]
        assert line.startswith("in flight: case 1 initial to it@h.example.org")
        assert "by a pass that did not finish; next try from" in line
    assert violations() == []
