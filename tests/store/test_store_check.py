"""`pacswatch db check` (store/check.py): a sound database is said to be sound; damage that
opening does not read (a table page deep in the file) and links that the code assumes but the
schema does not enforce are found and counted; a stalled scan is a note, not damage; nothing is
written."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text

from pacswatch.campaign.scanrun import STALE
from pacswatch.findings.work import IntervalSet
from pacswatch.cli import main
from pacswatch.record import AssociationFacts, DicomFacts, Find, Record
from pacswatch.store import Repository
from pacswatch.store.check import check_database

AT = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def finding(n: int) -> Record:
    facts = DicomFacts(association=AssociationFacts(accepted=True, called_ae="ANY-SCP", calling_ae="PACSWATCH"),
                       accepts_any_called_ae=True, echo=True, find=Find(allowed=True, studies=3, patients=2))
    return Record(ip=f"127.9.{n // 200}.{n % 200 + 1}", port=104, status="success", service="dicom", dicom=facts,
                  severity="critical", reasons=["C-FIND lists studies."], scanned_at=AT, elapsed_ms=30)


def filled(repo: Repository, count: int = 400) -> int:
    """A finished scan of `count` exposed endpoints, stored as a scan stores them."""
    scan_id = repo.create_scan(kind="scan", parameters={"targets": ["127.9.0.0/16"], "seed": 1}, seed=1,
                               fingerprint="f", targets_key="k", plan_size=count)
    work = IntervalSet()
    for start in range(0, count, 100):
        items = [(i, finding(i)) for i in range(start, min(start + 100, count))]
        for i, _ in items:
            work.add(i)
        repo.ingest(scan_id, items, work=work)
    repo.finish_scan(scan_id, "finished")
    return scan_id


def test_a_sound_database_is_sound_and_left_as_it_was(repo):
    filled(repo)
    report = check_database(repo, stale=STALE)
    assert report.sound and report.problems == [] and report.notes == [], report
    assert "findings without a service at their address" in report.checked
    if repo.backend == "sqlite":
        assert "SQLite integrity_check" in report.checked


def test_broken_links_and_progress_are_found_and_counted(repo):
    scan_id = filled(repo)
    with repo.engine.begin() as conn:
        conn.execute(text("DELETE FROM services WHERE ip IN ('127.9.0.1', '127.9.0.2')"))
        conn.execute(text("UPDATE findings SET last_observation_id = 999999 WHERE ip = '127.9.0.3'"))
        conn.execute(text("UPDATE scans SET done = done + 7 WHERE id = :id"), {"id": scan_id})
        conn.execute(text("INSERT INTO scan_work (scan_id, first_index, last_index) VALUES (:id, 5000, 5001)"),
                     {"id": scan_id})
    report = check_database(repo, stale=STALE)
    found = {p.what: p.count for p in report.problems}
    assert found == {
        "findings without a service at their address": 2,
        "findings whose last observation is missing": 1,
        "completed-work intervals outside their scan's plan": 1,
        "scans whose done count differs from their completed work": 1,
    }, found
    assert not report.sound


def test_findings_the_lifecycle_never_writes_are_found(repo):
    filled(repo, 10)
    missed = AT + timedelta(hours=1)
    repo.ingest(filled(repo, 0), [(None, Record(ip="127.9.0.4", port=104, status="connection-refused",
                                                 scanned_at=missed))])  # a real miss: sound
    repo.close_opted_out(["127.9.0.5"], at=missed)  # a real opt-out: sound
    assert check_database(repo, stale=STALE).sound
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE findings SET status = 'closed' WHERE ip = '127.9.0.1'"))
        conn.execute(text("UPDATE findings SET status = 'fixed', fixed_at = :at, missed_since = :at "
                          "WHERE ip = '127.9.0.2'"), {"at": missed})
        conn.execute(text("UPDATE findings SET fixed_at = NULL WHERE ip = '127.9.0.5'"))
    found = {p.what: p.count for p in check_database(repo, stale=STALE).problems}
    assert found == {
        "findings with a status pacswatch does not know": 1,
        "closed findings still marked as missed (missed_since set)": 1,
        "closed findings without the time they were closed (fixed_at)": 1,
    }, found


def test_a_scan_whose_writer_stopped_is_a_note_with_the_resume_command(repo):
    scan_id = filled(repo, 10)
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE scans SET status = 'running' WHERE id = :id"), {"id": scan_id})
    report = check_database(repo, stale=STALE, now=datetime.now(timezone.utc) + timedelta(hours=1))
    assert report.sound, report.problems
    assert len(report.notes) == 1 and f"pacswatch scan --resume {scan_id}" in report.notes[0], report.notes


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_table_page_that_opening_does_not_read_is_found_by_the_command(tmp_path, capsys):
    path = tmp_path / "pacswatch.db"
    with Repository.open(str(path)) as repo:
        filled(repo, 2000)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    # The root page of the observations table: an interior page, read by no query at opening.
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'observations'").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    at = (root - 1) * page_size
    assert data[at] in (0x05, 0x0D), "the observations root is a b-tree table page"
    data[at] = 0xFF  # no such page type
    path.write_bytes(bytes(data))
    before = digest(path)

    assert main(["db", "check", "--database", str(path)]) == 1
    out = capsys.readouterr().out
    assert "problem:" in out and "SQLite integrity_check found damage" in out, out
    # The checks that the damage keeps from running say so; the command does not crash.
    assert "could not run: database disk image is malformed" in out, out
    assert digest(path) == before  # read only
    # The other commands still open it: this damage is what only the check reads.
    assert main(["scans", "--database", str(path)]) == 0


def test_the_command_says_sound_and_exits_0(tmp_path, capsys):
    path = tmp_path / "pacswatch.db"
    with Repository.open(str(path)) as repo:
        filled(repo, 50)
    assert main(["db", "check", "--quick", "--database", str(path)]) == 0
    out = capsys.readouterr().out
    assert "SQLite quick_check" in out and out.strip().endswith("sound"), out
