"""Hostile text on its way to a person (issue 11): Rich markup and terminal escapes sent by peers
really started on loopback (a DICOM acceptor whose implementation version name is
`[/]\\x1b]0;pwned\\x07`, an Orthanc-like web server with `[/]` as its /system Version and an
escape in its page title, a realm of markup), and the same text planted raw in a database as
an older pacswatch would have stored it. The real CLI must exit 0, print no escape byte and no
traceback, show the text literally, and write CSV cells no spreadsheet will run."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:  # tests/: the pty helper shared with tests/test_output_tty.py
    sys.path.insert(0, _TESTS)
from ptyrun import PACSWATCH, plain, run_on_terminal

from pacswatch.lab.hostile import HOSTILE_VERSION_NAME, HostilePeers
from pacswatch.lab.web import TERMINAL_KINDS, start_web_lab

NET = f"127.94.{os.getpid() % 200}"
WEB_IP, TRAP_IP, DICOM_IP = f"{NET}.1", f"{NET}.2", f"{NET}.3"
ESC = "\x1b"
# What an older pacswatch may have stored from a peer: markup, an OSC title sequence, a formula.
RAW_PRODUCT = "[/]\x1b]0;pwned\x07[link=http://192.0.2.1]Orthanc"
FORMULA = "=2+5+cmd|' /C calc'!A0"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def run(*args: str, db: str) -> subprocess.CompletedProcess:
    # No notify configuration: nothing resolves names or asks RDAP (loopback is never sent there).
    env = {k: v for k, v in os.environ.items() if k != "PACSWATCH_NOTIFY_CONFIG"}
    return subprocess.run([*PACSWATCH, *args, "--database", db], check=False, capture_output=True, text=True,
                          timeout=120, env=env)


def assert_clean(result: subprocess.CompletedProcess) -> None:
    """Exit 0, no escape byte anywhere, no traceback."""
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout and ESC not in result.stderr, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr, result.stderr


@pytest.fixture(scope="module")
def peers():
    web = start_web_lab(WEB_IP, TRAP_IP, kinds=TERMINAL_KINDS)
    dicom = HostilePeers([("hostile-text", DICOM_IP, 0)], hold=60)
    (dicom_port,) = dicom.start()
    try:
        yield {"web": {e.kind: f"{e.ip}:{e.port}" for e in web.endpoints}, "dicom": f"{DICOM_IP}:{dicom_port}",
               "web_ports": ",".join(str(e.port) for e in web.endpoints)}
    finally:
        dicom.stop()
        web.stop()


@pytest.fixture(scope="module")
def scanned(peers, tmp_path_factory):
    """One real scan of the three peers into a database of its own."""
    db = str(tmp_path_factory.mktemp("terminal") / "hostile.db")
    result = run("scan", peers["dicom"], *peers["web"].values(), "--web-ports", peers["web_ports"], "--timeout", "2",
                 "--no-progress", db=db)
    assert result.returncode == 0, result.stderr  # the tests below build on its database
    return db, result


def test_a_scan_of_hostile_peers_finishes_and_prints_no_escape(scanned):
    db, result = scanned
    assert_clean(result)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["status"] for r in records} == {"success"} and len(records) == 3
    (scan,) = json.loads(run("scans", "--format", "json", db=db).stdout)
    assert scan["status"] == "finished"
    for command in (["findings"], ["history", DICOM_IP], ["history", WEB_IP], ["stats"], ["scans"]):
        assert_clean(run(*command, db=db))


def test_a_peers_text_is_cleaned_in_the_record_itself(peers, scanned, tmp_path):
    """Cleaned where it enters, not only where it is shown: the JSON record and the database hold
    the visible escape, never the raw control characters (assigned fields skip PeerText's
    validation, so the probe must clean them itself)."""
    db, result = scanned
    by_port = {f"{r['ip']}:{r['port']}": r for r in map(json.loads, result.stdout.splitlines())}
    name = by_port[peers["dicom"]]["dicom"]["association"]["implementation_version_name"]
    assert name == "[/]\\x1b]0;pwned\\x07", name
    probed = json.loads(run("probe", peers["dicom"], "--json", "--timeout", "2", db=str(tmp_path / "j.db")).stdout)
    assert probed["dicom"]["association"]["implementation_version_name"] == name
    with open(db, "rb") as f:
        assert b"\x1b]0;pwned" not in f.read()  # no raw ESC in any page of the database


def test_probe_shows_a_peers_markup_and_escapes_as_text(peers, tmp_path):
    db = str(tmp_path / "probe.db")
    dicom = run("probe", peers["dicom"], "--timeout", "2", db=db)
    assert_clean(dicom)
    # Shown literally: the markup as typed, the escape as a visible \x1b.
    assert "[/]\\x1b]0;pwned\\x07" in dicom.stdout, dicom.stdout
    assert HOSTILE_VERSION_NAME.startswith("[/]\x1b")
    for kind, endpoint in peers["web"].items():
        web = run("probe", endpoint, "--web", "--timeout", "2", db=db)
        assert_clean(web)
        assert "[/]" in web.stdout, (kind, web.stdout)


def test_on_a_terminal_a_peers_escape_is_shown_never_sent(peers, scanned):
    """On a real (pseudo-)terminal Rich colours its output; a peer's OSC sequence must still not
    get through: only colour (SGR) sequences, and the peer's text shown literally."""
    db, _ = scanned
    for args in (["probe", peers["dicom"], "--timeout", "2"], ["probe", peers["web"]["markup-orthanc"], "--web",
                                                                "--timeout", "2"],
                 ["scan", peers["dicom"], *peers["web"].values(), "--web-ports", peers["web_ports"], "--timeout",
                  "2", "--no-progress", "--no-attribute"], ["findings"], ["history", DICOM_IP]):
        code, shown, stderr = run_on_terminal([*args, "--database", db])
        assert code == 0, stderr
        assert ESC not in plain(shown) and "\x07" not in shown, (args, shown)  # no OSC, no BEL
        assert "Traceback" not in stderr and ESC not in stderr, stderr
    code, shown, _ = run_on_terminal(["probe", peers["dicom"], "--timeout", "2", "--database", db])
    assert "[/]\\x1b]0;pwned\\x07" in plain(shown), shown


def test_a_certificate_subject_of_markup_and_escapes_is_shown_as_text(tmp_path):
    from pacswatch.lab.certs import make_certificates
    from pacswatch.lab.web import WebLab

    certs = make_certificates([f"{NET}.4"], server_name="[/]\x1b]0;pwned\x07 lab")
    lab = WebLab(("orthanc-open-tls",), f"{NET}.4", TRAP_IP,
                 tls_context=certs.server_context(require_client_cert=False)).start()
    try:
        (endpoint,) = lab.endpoints
        result = run("probe", f"{endpoint.ip}:{endpoint.port}", "--web", "--timeout", "2", db=str(tmp_path / "tls.db"))
    finally:
        lab.stop()
        certs.cleanup()
    assert_clean(result)
    assert "[/]\\x1b]0" in result.stdout and "pwned\\x07 lab" in result.stdout, result.stdout  # subject, issuer


def test_markup_in_the_operators_calling_ae_neither_crashes_nor_leaves_the_scan_running(peers, tmp_path):
    db = str(tmp_path / "ae.db")
    result = run("scan", peers["dicom"], "--calling-ae", "[/]", "--timeout", "2", "--no-progress", db=db)
    assert_clean(result)
    assert "calling AE [/]" in result.stderr
    (scan,) = json.loads(run("scans", "--format", "json", db=db).stdout)
    assert scan["status"] == "finished"


def copy_database(source: str, target: str) -> None:
    """A copy of the scan's SQLite database, its WAL included (a file copy could miss both)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def plant_raw_text(db: str) -> None:
    """Write what an older pacswatch stored: raw peer text in products, versions and reasons."""
    with sqlite3.connect(db) as conn:
        for table in ("services", "observations"):
            update = f"update {table} set product = ?, product_version = ? where severity = ?"
            conn.execute(update, (RAW_PRODUCT, FORMULA, "critical"))
            conn.execute(update, (FORMULA, "\t=1+1", "high"))
        conn.execute("update findings set reasons = ?", (json.dumps([RAW_PRODUCT]),))


def csv_cells(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) >= 2, text
    return rows


def test_a_database_written_before_cleaning_is_shown_and_exported_safely(scanned, tmp_path):
    db = str(tmp_path / "old.db")
    copy_database(scanned[0], db)
    plant_raw_text(db)
    for command in (["findings"], ["findings", "--format", "json"], ["history", DICOM_IP], ["history", WEB_IP],
                    ["stats"], ["scans"]):
        result = run(*command, db=db)
        assert_clean(result)
    table = run("findings", db=db).stdout
    assert "[/]" in table and "\\x1b]0;pwned\\x07" in table  # the text, shown as text
    for command in (["findings", "--format", "csv"], ["export", "csv"]):
        result = run(*command, db=db)
        assert_clean(result)
        rows = csv_cells(result.stdout)
        cells = [cell for row in rows[1:] for cell in row]
        assert not [c for c in cells if c.startswith(FORMULA_STARTS)], rows
        assert "'" + FORMULA in cells, rows  # neutralised, not dropped
    # A leading TAB is neutralised too (the export keeps only versions that look like one).
    assert "'\\x09=1+1" in csv_cells(run("findings", "--format", "csv", db=db).stdout)[2], rows


def test_owner_names_with_markup_and_escapes_are_shown_as_text(scanned, tmp_path):
    db = str(tmp_path / "owners.db")
    copy_database(scanned[0], db)
    added = run("owners", "add", f"{NET}.0/24", "--name", "[/][bold]Lab Hospital", "--contact",
                "soc@lab-hospital.example.org", db=db)
    assert added.returncode == 0, added.stderr
    with sqlite3.connect(db) as conn:  # as an RDAP answer or an older pacswatch could have left it
        conn.execute("update owners set name = name || ?", ("\x1b]0;pwned\x07",))
    for command in (["owners", "list"], ["attribute"], ["cases"]):
        result = run(*command, db=db)
        assert_clean(result)
    listed = run("owners", "list", db=db).stdout
    assert "[/][bold]Lab Hospital\\x1b]0;pwned\\x07" in listed.replace("\n", ""), listed
    # `attribute` opened a case for that owner: its page names the owner, as text.
    cases = [json.loads(line) for line in run("cases", "--json", db=db).stdout.splitlines()]
    (case_id,) = [c["id"] for c in cases if "Lab Hospital" in c["owner_name"]]
    case = run("case", str(case_id), db=db)
    assert_clean(case)
    assert "[/][bold]Lab Hospital\\x1b]0;pwned\\x07" in case.stdout, case.stdout
