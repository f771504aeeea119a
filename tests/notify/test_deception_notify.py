"""Traps are kept and listed but not notified (issue 15): a real scan of the lab's open archive
and of its rebuilt honeypots DICOM server, a real SMTP server on loopback. notify sends the
archive's owner a notice naming the archive only and says which finding it skipped and why; an
analyst's `findings mark ID --real` wins over the signals (the next notice names it), `--honeypot`
leaves a finding out however clean its signals, and both are recorded with their reason."""

from __future__ import annotations

import csv
import io
import json
import os

from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import violations
from test_optout_notify import cli, write_config

from pacswatch.campaign.scope import contact_check
from pacswatch.cli import main
from pacswatch.lab import Lab
from pacswatch.notify.config import load
from pacswatch.notify.service import attribute
from pacswatch.store.repository import Repository

NET = os.getpid() % 200  # third octet: tests of other processes use other lab networks


def _setup(lab, db, config, capsys, base):
    assert cli(capsys, "owners", "add", f"{base}/24", "--name", "Hospital T", "--contact", "it@t.example.org",
               "--database", db)[0] == 0
    with Repository.open(db) as repo:
        scan_and_store(repo, lab_endpoints(lab.manifest))
        attribute(repo.engine, load(config), may_contact=contact_check(repo))
        return {(f["ip"]): f for f in repo.findings()}


def test_notify_skips_the_honeypot_and_says_why(database_url, smtp_server, tmp_path, capsys):
    base = f"127.77.{NET}.0"
    with Lab(base, port=0, names=["open-archive", "honeypot"]) as lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        findings = _setup(lab, db, config, capsys, base)
        archive, trap = lab.endpoint("open-archive"), lab.endpoint("honeypot")
        assert findings[trap.ip]["deception_verdict"] == "honeypot"
        assert findings[trap.ip]["deception_confidence"] >= 0.7
        assert findings[archive.ip]["deception_verdict"] is None

        code, out = cli(capsys, "notify", "--database", db, "--config", config)
        assert code == 0, out
        assert "skipped 1 finding(s) judged traps" in out
        assert (f"{trap.ip}:{trap.port} honeypot: judged honeypot with confidence 0.80 >= "
                "[notify] deception_threshold 0.7") in out
        (received,) = smtp_server.received
        body = received.content.decode()
        assert archive.ip in body and trap.ip not in body

        # Listed apart, kept: `findings` shows the verdict; `stats` counts it apart.
        code, out = cli(capsys, "findings", "--database", db, "--format", "json")
        rows = {r["ip"]: r for r in json.loads(out)}
        assert rows[trap.ip]["deception_verdict"] == "honeypot" and rows[trap.ip]["status"] == "open"
        code, out = cli(capsys, "stats", "--database", db, "--format", "json")
        stats = json.loads(out)
        assert stats["traps_by_verdict"] == {"honeypot": 1}
        assert stats["now"]["exposed_services"] == 1 and sum(stats["findings_by_severity"].values()) == 1
    assert violations() == []


def test_a_raised_threshold_notifies_the_trap(database_url, smtp_server, tmp_path, capsys):
    base = f"127.78.{NET}.0"
    with Lab(base, port=0, names=["honeypot"]) as lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        with open(config, "a") as fh:
            fh.write("\n[notify]\ndeception_threshold = 0.95\n")
        _setup(lab, db, config, capsys, base)
        code, out = cli(capsys, "notify", "--database", db, "--config", config)
        assert code == 0 and "judged traps" not in out, out
        (received,) = smtp_server.received
        assert lab.endpoint("honeypot").ip in received.content.decode()


def test_an_analysts_mark_wins_and_is_recorded(database_url, smtp_server, tmp_path, capsys):
    base = f"127.79.{NET}.0"
    with Lab(base, port=0, names=["open-archive", "honeypot"]) as lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        findings = _setup(lab, db, config, capsys, base)
        archive, trap = lab.endpoint("open-archive"), lab.endpoint("honeypot")
        code, out = cli(capsys, "findings", "mark", str(findings[trap.ip]["id"]), "--real", "--reason",
                        "the owner confirmed a production archive", "--database", db)
        assert code == 0 and "marked real" in out, out
        code, out = cli(capsys, "findings", "mark", str(findings[archive.ip]["id"]), "--honeypot", "--reason",
                        "our own research sensor", "--database", db)
        assert code == 0, out

        code, out = cli(capsys, "notify", "--database", db, "--config", config)
        assert code == 0, out
        assert f"{archive.ip}:{archive.port} honeypot: marked a honeypot by " in out
        assert "our own research sensor" in out
        (received,) = smtp_server.received
        body = received.content.decode()
        assert trap.ip in body and archive.ip not in body

        with Repository.open(db) as repo:
            row = {f["ip"]: f for f in repo.findings()}[trap.ip]
            events = repo.events(finding_ids=[row["id"]])
        assert row["deception_override"] == "real" and row["override_reason"] == "the owner confirmed a production archive"
        assert row["override_by"] and row["override_at"] is not None
        assert [e["kind"] for e in events][-1] == "marked-real"
        assert events[-1]["marked_by"] == row["override_by"]
        assert events[-1]["reason"] == "the owner confirmed a production archive"
        code, out = cli(capsys, "history", f"{trap.ip}:{trap.port}", "--database", db, "--no-resolve")
        assert code == 0, out
        assert f"marked real by {row['override_by']}: the owner confirmed a production archive" in out, out

        # A second mark keeps the first one's who and why on its own event; a reason with a
        # terminal escape and markup is shown cleaned, not run.
        code, out = cli(capsys, "findings", "mark", str(row["id"]), "--honeypot", "--reason",
                        "[red]fake[/red] \x1b[2Jsensor", "--database", db)
        assert code == 0, out
        code, out = cli(capsys, "history", f"{trap.ip}:{trap.port}", "--database", db, "--no-resolve")
        assert "marked real by " in out and ": the owner confirmed a production archive" in out, out
        assert "marked a honeypot by " in out and "[red]fake[/red]" in out, out
        assert "\x1b" not in out, out

        code, out = cli(capsys, "findings", "mark", "99999", "--real", "--reason", "x", "--database", db)
        assert code == 1 and "no finding 99999" in out
    assert violations() == []


def test_an_owner_with_only_a_trap_gets_no_notice(database_url, smtp_server, tmp_path, capsys):
    base = f"127.80.{NET}.0"
    with Lab(base, port=0, names=["honeypot"]) as lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        _setup(lab, db, config, capsys, base)
        for _ in range(2):  # and a second pass changes nothing
            code, out = cli(capsys, "notify", "--database", db, "--config", config)
            assert code == 0, out
            assert "skipped 1 finding(s) judged traps" in out
            assert "cases: 0 new; 0 state change(s)" in out  # attribution opened no case for the trap
            assert smtp_server.received == []
        code, out = cli(capsys, "cases", "--database", db)
        assert code == 0 and "Hospital T" not in out, out
    assert violations() == []


def test_exports_leave_traps_out_of_intelmq_and_mark_them_in_csv(database_url, smtp_server, tmp_path, capsys):
    base = f"127.81.{NET}.0"
    with Lab(base, port=0, names=["open-archive", "honeypot"]) as lab:
        db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
        findings = _setup(lab, db, config, capsys, base)
        archive, trap = lab.endpoint("open-archive"), lab.endpoint("honeypot")

        def export(kind: str) -> tuple[str, str]:
            assert main(["export", kind, "--database", db, "--config", config]) == 0
            captured = capsys.readouterr()
            return captured.out, captured.err

        def fed(out: str) -> set[str]:
            return {json.loads(line)["source.ip"] for line in out.splitlines()}

        out, err = export("intelmq")
        assert fed(out) == {archive.ip}, out  # the honeypot is not sent on as a vulnerable service
        assert "1 finding(s) judged traps left out of the IntelMQ feed" in err
        assert "deception_threshold 0.7" in err

        out, err = export("csv")
        rows = {r["ip"]: r for r in csv.DictReader(io.StringIO(out))}
        assert set(rows) == {archive.ip, trap.ip}, out  # kept, marked
        assert rows[trap.ip]["deception"].startswith("honeypot 0.80: judged honeypot with confidence 0.80")
        assert rows[archive.ip]["deception"] == ""

        # An analyst's mark wins both ways: the trap marked real goes to the feed, the archive
        # marked a honeypot leaves it, and the CSV says who marked it and why.
        assert cli(capsys, "findings", "mark", str(findings[trap.ip]["id"]), "--real", "--reason",
                   "the owner confirmed it", "--database", db)[0] == 0
        assert cli(capsys, "findings", "mark", str(findings[archive.ip]["id"]), "--honeypot", "--reason",
                   "=our sensor", "--database", db)[0] == 0
        out, err = export("intelmq")
        assert fed(out) == {trap.ip}, out
        out, _ = export("csv")
        rows = {r["ip"]: r for r in csv.DictReader(io.StringIO(out))}
        assert rows[trap.ip]["deception"] == ""
        assert rows[archive.ip]["deception"].startswith("honeypot 1.00: marked a honeypot by ")
        assert rows[archive.ip]["deception"].endswith(": =our sensor")  # a cell, not a formula
    assert violations() == []
