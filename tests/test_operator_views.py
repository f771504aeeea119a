"""What an operator reads after a scan agrees with what was measured: counts cut at --find-limit
say 'at least' everywhere they are shown (the scan's table, findings, history), the line under a
table cut at --top counts what `findings --scan` lists, and `stats` does not count an opted-out
service as exposed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from ptyrun import PACSWATCH, plain, run_on_terminal

from pacswatch.lab.hostile import HostilePeers
from pacswatch.lab.runner import Lab

FLOOD_IP = f"127.94.{os.getpid() % 200}.20"


def run(args, **kw):
    return subprocess.run(PACSWATCH + args, check=False, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def flood():
    """A C-FIND SCP that answers every query with pendings and ignores C-CANCEL: the count
    of studies stops at the limit, and patients are never counted."""
    peers = HostilePeers([("find-flood", FLOOD_IP, 0)], hold=60.0)
    (port,) = peers.start()
    yield f"{FLOOD_IP}:{port}"
    peers.stop()


def test_a_capped_count_reads_at_least_and_an_unknown_count_is_not_shown(flood, tmp_path):
    db = str(tmp_path / "flood.db")
    code, shown, stderr = run_on_terminal(["scan", flood, "--database", db, "--no-progress", "--no-attribute",
                                           "--timeout", "1", "--find-limit", "40"])
    shown = plain(shown)
    assert code == 0, stderr
    assert "find: ≥40 studies" in shown and "None" not in shown, shown
    table = run(["findings", "--database", db])
    assert re.search(r"│ ≥40 +│", table.stdout), table.stdout
    (finding,) = json.loads(run(["findings", "--database", db, "--format", "json"]).stdout)
    assert (finding["studies"], finding["patients"], finding["capped"]) == (40, None, True)
    history = run(["history", flood, "--database", db, "--no-resolve"])
    assert "≥40" in history.stdout, history.stdout


def test_stats_count_an_opted_out_service_apart_not_as_exposed(flood, tmp_path):
    db = str(tmp_path / "optout.db")
    scan = run(["scan", flood, "--database", db, "--quiet", "--no-attribute", "--timeout", "1", "--find-limit", "40"])
    assert scan.returncode == 0, scan.stderr
    before = json.loads(run(["stats", "--database", db, "--format", "json"]).stdout)
    assert before["now"] == {"exposed_services": 1, "studies": 40, "patients": 0}
    assert run(["optout", "add", f"{FLOOD_IP}/32", "--contact", "it@example.org", "--database", db]).returncode == 0
    after = json.loads(run(["stats", "--database", db, "--format", "json"]).stdout)
    assert after["now"] == {"exposed_services": 0, "studies": 0, "patients": 0}
    assert after["findings_by_status"] == {"opted-out": 1}
    assert after["exposed_by_port"] == {} and after["exposed_by_product"] == {}
    # history shows the opt-out (an event without an observation) and why
    history = run(["history", flood, "--database", db]).stdout
    assert "closed: the owner is on the opt-out list" in history, history


@pytest.fixture(scope="module")
def lab():
    base = f"127.95.{os.getpid() % 200}.0"
    with Lab(base, port=0, names=["open-archive", "echo-only", "http-not-dicom", "tarpit"]) as running:
        yield running


def test_the_line_under_a_cut_table_counts_what_findings_lists(lab, tmp_path):
    # One row shown; of the two left out, one is a finding (echo-only) and one a web server on a
    # DICOM port with no severity, which `findings --scan` does not list: counted apart.
    db = str(tmp_path / "top.db")
    targets = [f"{ip}:{port}" for ip, port in (lab.endpoint(k).address for k in ("open-archive", "echo-only",
                                                                                  "http-not-dicom"))]
    code, shown, stderr = run_on_terminal(["scan", *targets, "--database", db, "--no-progress", "--no-attribute",
                                           "--top", "1", "--timeout", "2"])
    shown = plain(shown)
    assert code == 0, stderr
    scan_id = json.loads(run(["scans", "--database", db, "--format", "json"]).stdout)[0]["id"]
    assert f"... and 1 more: pacswatch findings --scan {scan_id}; 1 more answered without a finding" in shown, shown
    listed = json.loads(run(["findings", "--database", db, "--scan", str(scan_id), "--format", "json"]).stdout)
    assert [r["severity"] for r in listed] == ["critical", "medium"]


def test_findings_of_a_scan_that_does_not_exist_is_an_error_not_an_empty_table(tmp_path):
    db = str(tmp_path / "empty.db")
    result = run(["findings", "--database", db, "--scan", "99"])
    assert result.returncode == 2, result.stdout
    assert "there is no scan 99 in this database" in result.stderr and result.stdout == ""


def test_db_check_calls_a_killed_scan_stalled_at_once_as_scans_does(lab, tmp_path):
    # `scans` says stalled as soon as the scan's process is gone (on this machine); db check
    # said nothing about it for 15 s (the heartbeat rule alone), then a note: the same scan.
    db = str(tmp_path / "killed.db")
    ip, port = lab.endpoint("tarpit").address
    scan = subprocess.Popen(PACSWATCH + ["scan", f"{ip}:{port}", "--database", db, "--quiet", "--no-attribute",
                                         "--timeout", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = run(["scans", "--database", db, "--format", "json"])
            if listed.returncode == 0 and json.loads(listed.stdout or "[]"):
                break
            time.sleep(0.2)
    finally:
        scan.send_signal(signal.SIGKILL)
        scan.wait()
    (row,) = json.loads(run(["scans", "--database", db, "--format", "json"]).stdout)
    assert row["status"] == "stalled"
    check = run(["db", "check", "--database", db])
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"note: scan {row['id']} is marked running but its writer stopped" in check.stdout, check.stdout
    assert f"pacswatch scan --resume {row['id']}" in check.stdout


def test_a_target_file_with_many_bad_lines_is_listed_one_a_line_and_cut(tmp_path):
    # The bad lines were joined with newlines that the one-line error cleaning turned into
    # '\x0a' (a 4 KB line, cut); now one line each, the first 20, then how many more.
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1\x1b[2J\n" + "".join(f"127.0.0.{n}O\n" for n in range(25)))
    result = run(["scan", f"@{targets}", "--database", str(tmp_path / "t.db")])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "pacswatch scan: 26 bad target specs:", result.stderr
    assert len(lines) == 22 and all(line.startswith(f"  {targets} line ") for line in lines[1:21])
    assert lines[21] == "  ... and 6 more"
    assert "\\x0a" not in result.stderr and "\x1b" not in result.stderr and "\\x1b[2J" in lines[1]


def test_a_scan_of_endpoints_seen_before_by_other_targets_does_not_call_itself_the_first(lab, tmp_path):
    db = str(tmp_path / "first.db")
    archive, echo = (f"{ip}:{port}" for ip, port in (lab.endpoint(k).address for k in ("open-archive", "echo-only")))
    first = run(["scan", archive, echo, "--database", db, "--no-progress", "--no-attribute", "--timeout", "2"])
    assert "changes (no earlier scan of the same targets; each endpoint against its last look): 2 new" in first.stderr
    again = run(["scan", archive, "--database", db, "--no-progress", "--no-attribute", "--timeout", "2"])
    assert again.returncode == 0, again.stderr
    assert "first scan" not in again.stderr
    assert "(no earlier scan of the same targets; each endpoint against its last look): 0 new" in again.stderr


def test_findings_say_which_open_finding_was_missed_once(tmp_path):
    # A server switched off: the first miss leaves the finding open until a second miss
    # confirms it (two-miss rule); the findings table says so instead of a bare 'open'.
    ip = f"127.94.{os.getpid() % 200}.21"
    peers = HostilePeers([("find-flood", ip, 0)], hold=60.0)
    (port,) = peers.start()
    db = str(tmp_path / "missed.db")
    scan = ["scan", f"{ip}:{port}", "--database", db, "--quiet", "--no-attribute", "--timeout", "1"]
    try:
        assert run(scan).returncode == 0
    finally:
        peers.stop()
    assert run(scan).returncode == 0  # connection refused now: missed once
    table = run(["findings", "--database", db]).stdout
    assert "open, missed once" in table, table


def test_resume_refuses_plan_and_probe_options_it_would_ignore(tmp_path):
    # `scan --resume 1 --ports 104` resumed the old ports without a word.
    db = str(tmp_path / "resume.db")
    refused = run(["scan", "--resume", "5", "--ports", "104", "--timeout", "9", "--database", db])
    assert refused.returncode == 2
    assert "--resume 5 keeps the plan and probe settings scan 5 started with, so --ports, --timeout would be " \
           "ignored" in refused.stderr, refused.stderr
    # Pace, workers and output may change: those go on to the database (which has no scan 5).
    taken = run(["scan", "--resume", "5", "--rate", "10", "--workers", "2", "-o", str(tmp_path / "x.jsonl"),
                 "--database", db])
    assert "there is no scan 5" in taken.stderr, taken.stderr


def test_a_database_that_stops_taking_records_names_the_resume_command(lab, tmp_path):
    # Found with a database on a full tmpfs: 'records could not be stored: ... disk is full' and
    # nothing on how to go on, where Ctrl-C and a full output give the resume command. Here a
    # trigger refuses the records, as the full disk did.
    from pacswatch.store import Repository

    db = str(tmp_path / "refusing.db")
    with Repository.open(db) as repo, repo.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER no_obs BEFORE INSERT ON observations "
                             "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    targets = [f"{ip}:{port}" for ip, port in (lab.endpoint(k).address for k in ("open-archive", "echo-only"))]
    failed = run(["scan", *targets, "--database", db, "--no-progress", "--no-attribute", "--timeout", "2"])
    assert failed.returncode == 1
    assert "records could not be stored" in failed.stderr
    assert "once that is fixed: pacswatch scan --resume 1" in failed.stderr, failed.stderr
    with Repository.open(db) as repo, repo.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER no_obs")
    resumed = run(["scan", "--resume", "1", "--database", db, "--no-progress", "--no-attribute"])
    assert resumed.returncode == 0, resumed.stderr
    (scan,) = json.loads(run(["scans", "--database", db, "--format", "json"]).stdout)
    assert scan["status"] == "finished" and scan["done"] == 2
