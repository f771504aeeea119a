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
            attribute(repo.engine, load(str(config)))
        for retrying in (1, 0):
            code, out = cli(capsys, "notify", "--database", database_url, "--config", str(config))
            assert code == 0 and f"retrying {retrying}," in out, out
            (line,) = [x for x in out.splitlines() if x.startswith("waiting:")]
            assert line.startswith("waiting: case 1 initial to it@g.example.org after 1 failed attempt(s) (connect:")
            assert "Connection refused" in line and "UTC (run pacswatch notify again then)" in line
    assert violations() == []
