"""A case whose services all refuse unknown callers, with `[notify] list_protected = false`:
the notice would list nothing ("0 services"), so none is sent, and `notify` says why. With
list_protected = true (the default) the same case is told its services are reachable but
protected. A real scan of the lab's AE-restricted archive, a real SMTP server on loopback."""

from __future__ import annotations

import os

from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import violations
from test_optout_notify import cli, write_config

from pacswatch.campaign.scope import contact_check
from pacswatch.lab import Lab
from pacswatch.notify.config import load
from pacswatch.notify.service import attribute
from pacswatch.store.repository import Repository

NET = os.getpid() % 200  # third octet: tests of other processes use other lab networks


def test_no_notice_that_would_list_nothing(database_url, smtp_server, tmp_path, capsys):
    with Lab(f"127.76.{NET}.0", port=0, names=["ae-restricted"]) as lab:
        db = database_url
        config = write_config(tmp_path / "notify.toml", smtp_server)
        with open(config, "a") as fh:
            fh.write("\n[notify]\nlist_protected = false\n")
        assert cli(capsys, "owners", "add", f"127.76.{NET}.0/24", "--name", "Hospital F", "--contact",
                   "it@f.example.org", "--database", db)[0] == 0
        with Repository.open(db) as repo:
            scan_and_store(repo, lab_endpoints(lab.manifest))
            attribute(repo.engine, load(config), may_contact=contact_check(repo))

        code, out = cli(capsys, "notify", "--database", db, "--config", config, "--dry-run",
                        "--out", str(tmp_path / "outbox"))
        assert code == 0 and "dry run: 0 message(s) written" in out
        code, out = cli(capsys, "notify", "--database", db, "--config", config)
        assert code == 0 and smtp_server.received == []
        assert ("no notice: its 1 service(s) all refuse unknown callers or ask for a login, "
                "and [notify] list_protected = false leaves them out") in out

        # The control: listed (the default), the same case is told.
        (tmp_path / "listed.toml").write_text(open(config).read().replace("list_protected = false",
                                                                         "list_protected = true"))
        code, out = cli(capsys, "notify", "--database", db, "--config", str(tmp_path / "listed.toml"))
        assert code == 0, out
        (received,) = smtp_server.received
        assert "reachable but protected" in received.content.decode()
    assert violations() == []
