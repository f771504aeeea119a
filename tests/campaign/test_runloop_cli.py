"""`pacswatch run` that talks (issue 12, item 4) and the two-miss rule from the command line,
in process against lab servers on loopback: one line per pass, intervals that change re-plan
the services already scheduled, `run --now SELECTOR` rescans at once (through the same opt-out
and scope check as `scan`) and exits, `--confirm-fixed-after` and the config key, `history`
saying why a finding changed."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from test_campaign_scanrun import Watched, free_port

from pacswatch.cli import main
from pacswatch.lab.pacs import PacsServer
from pacswatch.record import AssociationFacts, DicomFacts, Find, Record
from pacswatch.store import Repository

pytestmark = pytest.mark.timeout(180)
BASE = f"127.57.{os.getpid() % 200}"


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "run.db")


@pytest.fixture
def lab():
    """Start lab servers by kind on BASE.n; all stopped at the end."""
    servers = []

    def start(kind: str, n: int) -> PacsServer:
        ip = f"{BASE}.{n}"
        server = PacsServer(kind, ip, free_port(ip))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def address(server) -> str:
    return f"{server.ip}:{server.port}"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def looks(db, ip) -> int:
    with Repository.open(db) as repo:
        return len(repo.observations(ip=ip))


def test_run_says_what_each_pass_did_and_replans_when_the_intervals_change(db, lab, capsys):
    archive, echo = lab("open-archive", 1), lab("echo-only", 2)  # critical, medium
    assert cli(capsys, "scan", address(archive), address(echo), "--database", db, "-q", "--no-attribute")[0] == 0

    code, _, err = cli(capsys, "run", "--once", "--database", db)
    assert code == 0
    # Nothing due: still one line, with when the next service falls due (the critical one, 12 h).
    (line,) = [x for x in err.splitlines() if x.startswith("pass ")]
    assert re.fullmatch(r"pass \S+ \S+: 0 due; next due \S+ \S+", line), line
    assert "re-planned" not in err  # the intervals that scheduled them are this run's

    time.sleep(1.1)  # critical=1s: the archive is due again since its last look
    code, _, err = cli(capsys, "run", "--once", "--interval", "critical=1s", "--database", db)
    assert code == 0, err
    assert "intervals changed: re-planned 1 service(s)" in err, err  # the medium one keeps its 4 days
    (line,) = [x for x in err.splitlines() if x.startswith("pass ")]
    assert re.search(r": 1 due; 1 probed \(1 success\) by rescan 2; changes: none; next due ", line), line
    assert looks(db, archive.ip) == 2 and looks(db, echo.ip) == 1

    code, _, err = cli(capsys, "run", "--once", "--interval", "critical=1s", "--database", db)
    assert code == 0 and "re-planned" not in err  # the same intervals again: nothing to re-plan
    with Repository.open(db) as repo:
        by_ip = {s["ip"]: s for s in repo.services()}
    assert by_ip[archive.ip]["next_due"] <= by_ip[archive.ip]["last_checked"] + timedelta(seconds=1)
    assert by_ip[echo.ip]["next_due"] == by_ip[echo.ip]["last_checked"] + timedelta(days=4)

    # A scan schedules with the intervals the last run set for this installation.
    assert cli(capsys, "scan", address(archive), "--database", db, "-q", "--no-attribute")[0] == 0
    with Repository.open(db) as repo:
        service = {s["ip"]: s for s in repo.services()}[archive.ip]
    assert service["next_due"] == service["last_checked"] + timedelta(seconds=1)

    # Back to the default intervals: the archive is scheduled 12 h after its last look again.
    code, _, err = cli(capsys, "run", "--once", "--database", db)
    assert "intervals changed: re-planned 1 service(s)" in err, err
    with Repository.open(db) as repo:
        service = {s["ip"]: s for s in repo.services()}[archive.ip]
    assert service["next_due"] == service["last_checked"] + timedelta(hours=12)


def test_run_now_rescans_what_the_selector_names_at_once_and_exits(db, lab, capsys):
    archive, echo = lab("open-archive", 3), lab("echo-only", 4)
    assert cli(capsys, "scan", address(archive), address(echo), "--database", db, "-q", "--no-attribute")[0] == 0

    code, _, err = cli(capsys, "run", "--now", archive.ip, "--database", db)
    assert code == 0, err
    assert "services asked for (--now)" in err and re.search(r"1 probed \(1 success\)", err), err
    assert (looks(db, archive.ip), looks(db, echo.ip)) == (2, 1)

    assert cli(capsys, "run", "--now", "--severity", "medium", "--database", db)[0] == 0
    assert (looks(db, archive.ip), looks(db, echo.ip)) == (2, 2)
    assert cli(capsys, "run", "--now", f"{BASE}.0/24", "--severity", "critical,high", "--database", db)[0] == 0
    assert (looks(db, archive.ip), looks(db, echo.ip)) == (3, 2)
    assert cli(capsys, "run", "--now", address(echo), "--database", db)[0] == 0  # HOST:PORT
    assert (looks(db, archive.ip), looks(db, echo.ip)) == (3, 3)

    code, _, err = cli(capsys, "run", "--now", "203.0.113.9", "--database", db)
    assert code == 1 and "no known service matches --now 203.0.113.9" in err
    for argv, says in ((["--now"], "needs a SELECTOR"), (["--severity", "high"], "go with --now"),
                       (["--now", "pacs.example.org"], "not a host name"),
                       (["--now", "--severity", "urgent"], "unknown severity urgent")):
        code, _, err = cli(capsys, "run", *argv, "--database", db)
        assert code == 2 and says in err, (argv, err)
    assert (looks(db, archive.ip), looks(db, echo.ip)) == (3, 3)


def exposed(ip: str, port: int) -> Record:
    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=3, patients=1))
    return Record(ip=ip, port=port, status="success", service="dicom", severity="critical", dicom=facts,
                  scanned_at=datetime.now(timezone.utc) - timedelta(hours=1))


@pytest.mark.parametrize("refusal", ["optout", "scope"])
def test_run_now_passes_every_target_through_the_scans_opt_out_and_scope(db, capsys, refusal):
    watched = Watched(f"{BASE}.{10 if refusal == 'optout' else 11}")
    try:
        ip, port = watched.address.rsplit(":", 1)
        with Repository.open(db) as repo:  # a service known from an earlier scan
            scan_id = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f", targets_key="k",
                                       plan_size=1)
            repo.ingest(scan_id, [(0, exposed(ip, int(port)))])
        # Allowed: the rescan does contact it (so the refusals below are what stops it).
        assert cli(capsys, "run", "--now", ip, "--database", db)[0] == 0
        assert watched.connections >= 1
        before = watched.connections
        if refusal == "optout":
            assert cli(capsys, "optout", "add", ip, "--contact", "pacs-admin@example.org", "--database", db)[0] == 0
        else:
            assert cli(capsys, "scope", "add", f"{BASE}.200/32", "--database", db)[0] == 0
        code, _, err = cli(capsys, "run", "--now", ip, "--database", db)
        assert code == 0 and re.search(r"1 probed \(1 blocked\)", err), err
        assert watched.connections == before
        with Repository.open(db) as repo:
            (last,) = repo.observations(ip=ip)[-1:]
        assert last["status"] == "blocked"
    finally:
        watched.close()


def test_confirm_fixed_after_from_the_flag_and_the_config_and_history_says_why(db, lab, capsys, tmp_path,
                                                                               monkeypatch):
    archive = lab("open-archive", 5)
    target = address(archive)
    assert cli(capsys, "scan", target, "--database", db, "-q", "--no-attribute")[0] == 0
    archive.stop()

    code, _, err = cli(capsys, "scan", target, "--database", db, "--no-progress", "--no-attribute",
                       "--confirm-fixed-after", "0")
    assert code == 0, err
    assert "0 new, 0 fixed, 0 reopened, 1 missed once (still open), 0 seen again" in " ".join(err.split()), err
    with Repository.open(db) as repo:
        (finding,) = repo.findings()
    assert finding["status"] == "open" and finding["missed_since"] is not None  # one miss fixes nothing
    code, out, _ = cli(capsys, "findings", "--format", "csv", "--database", db)
    assert out.splitlines()[0].endswith(",reopen_count,missed_since") and out.splitlines()[1].endswith("Z"), out

    config = tmp_path / "notify.toml"
    config.write_text('[campaign]\nconfirm_fixed_after = "0"\n')
    monkeypatch.setenv("PACSWATCH_NOTIFY_CONFIG", str(config))
    assert cli(capsys, "scan", target, "--database", db, "-q", "--no-attribute")[0] == 0
    with Repository.open(db) as repo:
        (finding,) = repo.findings()
    assert finding["status"] == "fixed" and finding["missed_since"] is None

    code, out, _ = cli(capsys, "history", target, "--database", db)
    assert code == 0
    assert "missed by scan 2 (connection-refused); still open until a second miss confirms it" in out, out
    assert re.search(r"fixed after a second miss by scan 3 \(connection-refused\), \d+ s after the first by "
                     r"scan 2", out), out

    config.write_text('[campaign]\nconfirm_fixed_after = "soon"\n')
    code, _, err = cli(capsys, "scan", target, "--database", db, "-q")
    assert code == 2 and "[campaign] confirm_fixed_after: 'soon' is not a duration" in err, err
    code, _, err = cli(capsys, "scan", target, "--database", db, "-q", "--confirm-fixed-after", "6")
    assert code == 2 and "--confirm-fixed-after: '6' is not a duration" in err, err
    with Repository.open(db) as repo:
        assert len(repo.scans()) == 3  # refused before a scan was started


def test_scan_and_run_read_the_notify_config_named_by_config(db, capsys, tmp_path, monkeypatch):
    # README names the notify config "by --config or PACSWATCH_NOTIFY_CONFIG"; scan and run
    # refused --config. The flag wins over the variable; a bad file is refused before any scan.
    monkeypatch.setenv("PACSWATCH_NOTIFY_CONFIG", str(tmp_path / "absent.toml"))
    config = tmp_path / "notify.toml"
    config.write_text('[campaign]\nconfirm_fixed_after = "soon"\n')
    for command in (["scan", f"{BASE}.9:104"], ["run", "--now", f"{BASE}.9"]):
        code, _, err = cli(capsys, *command, "--database", db, "-q", "--config", str(config))
        assert code == 2 and "[campaign] confirm_fixed_after: 'soon' is not a duration" in err, err
    with Repository.open(db) as repo:
        assert repo.scans() == []


def test_an_idle_run_says_when_the_next_service_is_due_once_not_every_tick(tmp_path):
    import threading

    from pacswatch.campaign.runloop import RunLoop

    with Repository.open(str(tmp_path / "idle.db")) as repo:
        scan_id = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f", targets_key="k", plan_size=1)
        repo.ingest(scan_id, [(0, exposed("127.0.0.1", 104))])  # due 12 h after its look
        lines: list[str] = []
        loop = RunLoop(repo, make_job=None, build_plan=None, parameters={}, tick=0.01, log=lines.append)
        runner = threading.Thread(target=loop.forever)
        runner.start()
        time.sleep(0.5)  # dozens of idle ticks
        loop.stop.set()
        runner.join(10)
    assert len(lines) == 1 and re.fullmatch(r"pass \S+ \S+: 0 due; next due \S+ \S+", lines[0]), lines
