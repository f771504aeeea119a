"""`pacswatch run` and a person's verdicts (issue 13's triage): a service whose finding is
suppressed until a date is not rescanned before that date and is from then on; one marked a false
positive keeps being rescanned, so that a change is seen. Real lab archives on loopback; the
verdicts written by the dashboard's own writer (web/events.record_event)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from test_runloop_cli import address, cli, db, lab, looks  # noqa: F401  (fixtures)

from pacswatch.store import Repository
from pacswatch.web.accounts import User
from pacswatch.web.events import record_event

pytestmark = pytest.mark.timeout(180)


def mark(url: str, finding_id: int, action: str, until: datetime | None = None) -> None:
    with Repository.open(url) as repo, repo.engine.begin() as conn:
        record_event(conn, User(1, "alice", "analyst"), "test", datetime.now(timezone.utc), finding_id=finding_id,
                     action=action, until=until)


def test_run_skips_a_suppressed_service_until_its_date_and_rescans_a_false_positive(db, lab, capsys):  # noqa: F811
    plain, held, false_positive = lab("open-archive", 11), lab("open-archive", 12), lab("open-archive", 13)
    servers = (plain, held, false_positive)
    assert cli(capsys, "scan", *map(address, servers), "--database", db, "-q", "--no-attribute")[0] == 0
    with Repository.open(db) as repo:
        ids = {f["ip"]: f["id"] for f in repo.findings()}
    until = datetime.now(timezone.utc) + timedelta(seconds=4)
    mark(db, ids[held.ip], "suppressed", until)
    mark(db, ids[false_positive.ip], "false-positive")

    time.sleep(1.1)  # critical=1s: all three are due by their schedule
    code, _, err = cli(capsys, "run", "--once", "--interval", "critical=1s", "--database", db)
    assert code == 0, err
    assert "rescan" in err and "2 services due" in err, err
    assert [looks(db, s.ip) for s in servers] == [2, 1, 2]

    time.sleep(max(0.0, (until - datetime.now(timezone.utc)).total_seconds()) + 0.2)  # the date has passed
    code, _, err = cli(capsys, "run", "--once", "--interval", "critical=1s", "--database", db)
    assert code == 0, err
    assert looks(db, held.ip) == 2  # due again from the date on
