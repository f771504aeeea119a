"""A person's verdict on a finding counts at notify time (issue 13's triage): a finding marked a
false positive, or suppressed until a date still ahead, is named in no notice, and the pass says
which it left out and why; `stats` counts them apart. Once the suppression's date has passed the
finding is notified like any other. Real scans of lab servers on loopback, a real SMTP server
(aiosmtpd), the verdicts written by the dashboard's own writer (web/events.record_event)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import violations
from test_optout_notify import cli, message_text, write_config

from pacswatch.campaign.scope import contact_check
from pacswatch.lab import Lab
from pacswatch.notify.config import load
from pacswatch.notify.service import attribute, notify
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository
from pacswatch.web.accounts import User
from pacswatch.web.events import record_event

pytestmark = pytest.mark.slow
NET = os.getpid() % 200  # third octet: tests of other processes use other lab networks


def mark(db: str, finding_id: int, action: str, reason: str, until: datetime | None = None) -> None:
    """What the dashboard's "false positive" and "suppress until" buttons write."""
    with Repository.open(db) as repo, repo.engine.begin() as conn:
        record_event(conn, User(1, "alice", "analyst"), reason, datetime.now(timezone.utc), finding_id=finding_id,
                     action=action, until=until)


def test_false_positive_and_suppressed_findings_are_not_notified_until_the_date(database_url, smtp_server,
                                                                                tmp_path, capsys):
    t_base, u_base = f"127.82.{NET}.0", f"127.83.{NET}.0"
    with Lab(t_base, port=0, names=["open-archive", "big-archive"]) as t_lab, \
            Lab(u_base, port=0, names=["open-archive"]) as u_lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        for base, name, contact in ((t_base, "Hospital T", "it@t.example.org"),
                                    (u_base, "Clinic U", "it@u.example.org")):
            assert cli(capsys, "owners", "add", f"{base}/24", "--name", name, "--contact", contact,
                       "--database", db)[0] == 0
        kept, false_positive = t_lab.endpoint("open-archive"), t_lab.endpoint("big-archive")
        suppressed = u_lab.endpoint("open-archive")
        with Repository.open(db) as repo:
            scan_and_store(repo, lab_endpoints(t_lab.manifest) + lab_endpoints(u_lab.manifest))
            ids = {f["ip"]: f["id"] for f in repo.findings()}
        mark(db, ids[false_positive.ip], "false-positive", "our own test archive, synthetic data")
        until = datetime.now(timezone.utc) + timedelta(hours=1)
        mark(db, ids[suppressed.ip], "suppressed", "owner is migrating it this week", until=until)
        with Repository.open(db) as repo:
            attribute(repo.engine, load(config), may_contact=contact_check(repo))

        code, out = cli(capsys, "notify", "--database", db, "--config", config)
        assert code == 0, out
        assert "skipped 2 finding(s) marked a false positive or suppressed, not notified:" in out
        assert (f"{false_positive.ip}:{false_positive.port} false-positive: marked a false positive by alice on "
                f"{datetime.now(timezone.utc):%Y-%m-%d}: our own test archive, synthetic data") in out
        assert (f"{suppressed.ip}:{suppressed.port} suppressed: suppressed until {until:%Y-%m-%d %H:%M} UTC "
                "by alice: owner is migrating it this week") in out
        (received,) = smtp_server.received  # Hospital T's notice; Clinic U's only service is suppressed
        text = message_text(received.content)
        assert "it@t.example.org" in text
        assert kept.ip in text and false_positive.ip not in text and suppressed.ip not in text

        # stats: both counted apart, not as exposures (three services were found exposed).
        code, out = cli(capsys, "stats", "--database", db, "--format", "json")
        stats = json.loads(out)
        assert stats["triaged_by_verdict"] == {"false-positive": 1, "suppressed": 1}
        assert stats["now"]["exposed_services"] == 1 and sum(stats["findings_by_severity"].values()) == 1

        # After the date: the suppressed finding is notified; the false positive still is not.
        later = until + timedelta(minutes=1)
        with Repository.open(db) as repo:
            result = notify(repo.engine, load(config), dry_run=False, clock=lambda: later)
        assert [t[:3] for t in result.plan.triaged] == [(false_positive.ip, false_positive.port, "false-positive")]
        assert len(smtp_server.received) == 2
        text = message_text(smtp_server.received[1].content)
        assert "it@u.example.org" in text and suppressed.ip in text and false_positive.ip not in text

        # Suppressed again after its case was notified: no message, and the case waits as it is
        # (it does not close as if its service had gone to another owner).
        mark(db, ids[suppressed.ip], "suppressed", "owner asked for two more weeks", until=later + timedelta(weeks=2))
        with Repository.open(db) as repo:
            result = notify(repo.engine, load(config), dry_run=False, clock=lambda: later + timedelta(minutes=1))
            cases = {c.owner_name: c.state for c in NotifyStore(repo.engine).cases()}
        assert sorted(t[0] for t in result.plan.triaged) == sorted([false_positive.ip, suppressed.ip])
        assert len(smtp_server.received) == 2 and result.plan.transitions == []
        assert cases == {"Hospital T": "notified", "Clinic U": "notified"}
    assert violations() == []
