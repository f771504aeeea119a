"""The glue behind `pacswatch lab` and `pacswatch demo`."""

import asyncio
import io
import json

import pytest

from pacswatch.cli.scan import scan_from_argv
from pacswatch.cli.lab import _lab_plan, run_demo_command, start_demo_lab
from pacswatch.lab.demo import run_demo

from labhelpers import fresh_base, record_from_expected


def test_run_demo_with_an_injected_scan():
    async def perfect(manifest):
        return [{"ip": e.ip, "port": e.port, **record_from_expected(e.expected)} for e in manifest]

    async def wrong(manifest):
        return [{"ip": e.ip, "port": e.port, "status": "success", "severity": "critical"} for e in manifest]

    out = io.StringIO()
    names = ["open-archive", "tarpit", "fast-responder"]
    assert asyncio.run(run_demo(perfect, base_ip=fresh_base(), port=0, names=names, out=out)) == 0
    assert "3/3 endpoints" in out.getvalue()
    out = io.StringIO()
    assert asyncio.run(run_demo(wrong, base_ip=fresh_base(), port=0, names=names, out=out)) == 1
    assert "tarpit: status: expected 'io-timeout', got 'success'" in out.getvalue()


def test_demo_lab_falls_back_to_free_ports_when_the_standard_ones_are_taken():
    base = fresh_base()
    first = start_demo_lab(base, names=["echo-only"])
    try:
        port = first.endpoint("echo-only").port
        second = start_demo_lab(base, names=["echo-only"])
        try:
            # Whichever lab got the standard port, the other one still came up.
            assert second.endpoint("echo-only").port != port
        finally:
            second.stop()
        plan = _lab_plan(first.manifest)
        assert plan.size == 1 and [(p.index, p.ip, p.port) for p in plan] == [(0, *first.manifest[0].address)]
    finally:
        first.stop()


def test_demo_command_scans_the_lab_with_the_real_scanner(tmp_path):
    """End to end through pacswatch's own scanner: a failure here names the disagreeing fact."""
    out = io.StringIO()
    output = tmp_path / "records.jsonl"
    rc = run_demo_command(fresh_base(), str(output), scan=scan_from_argv, names=["open-archive", "echo-only", "reset"],
                          out=out)
    assert rc == 0, out.getvalue()
    text = output.read_text()
    # Three DICOM endpoints plus the web lab's PACS-like endpoints, which the demo always adds.
    from pacswatch.lab.web import PACS_KINDS

    assert len(text.splitlines()) == 3 + len(PACS_KINDS)
    total = 3 + len(PACS_KINDS)
    assert f"{total}/{total} endpoints reported as the lab expects" in out.getvalue()
    assert all(json.loads(line)["ip"].startswith("127.") for line in text.splitlines())
    assert "LAB^" not in text and "LABPID" not in text  # counted, never kept


def test_demo_output_to_a_pipe_through_dev_stdout_and_a_planted_link_refused_first(tmp_path):
    # The demo read its --output back to check it: `-o /dev/stdout` on a pipe waited for ever.
    import subprocess
    import sys
    import time

    from pacswatch.safefile import UnsafePath

    done = subprocess.run([sys.executable, "-m", "pacswatch.cli", "demo", "--base-ip", fresh_base(), "-o",
                           "/dev/stdout"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(records) >= 20 and "endpoints reported as the lab expects" in done.stdout
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "records.jsonl"
    link.symlink_to(victim)
    started = time.monotonic()
    with pytest.raises(UnsafePath):
        run_demo_command(fresh_base(), str(link), scan=scan_from_argv, names=["echo-only"], out=io.StringIO())
    assert time.monotonic() - started < 1.0  # refused before the lab starts and the scan runs
    assert victim.read_text() == "keep"


def test_the_demo_stores_in_a_throw_away_database_not_the_operators(tmp_path, monkeypatch, capsys):
    """Issue 12, item 8: without --database the demo leaves the operator's database (here the one
    PACSWATCH_DATABASE_URL names) untouched; with --database it stores there."""
    from pacswatch.cli import main

    operators = tmp_path / "operators.db"
    monkeypatch.setenv("PACSWATCH_DATABASE_URL", str(operators))
    out = io.StringIO()
    assert run_demo_command(fresh_base(), scan=scan_from_argv, names=["echo-only"], out=out) == 0, out.getvalue()
    assert not operators.exists()
    kept = tmp_path / "kept.db"
    assert run_demo_command(fresh_base(), scan=scan_from_argv, names=["echo-only"], out=io.StringIO(),
                            database=str(kept)) == 0
    capsys.readouterr()
    assert main(["scans", "--format", "json", "--database", str(kept)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_a_demo_blocked_by_an_optout_says_so_in_one_line(tmp_path, capsys):
    from pacswatch.cli import main

    base = fresh_base()
    db = str(tmp_path / "optout.db")
    assert main(["optout", "add", base.rsplit(".", 1)[0] + ".0/24", "--contact", "soc@example.org",
                 "--database", db]) == 0
    out = io.StringIO()
    assert run_demo_command(base, scan=scan_from_argv, names=["echo-only", "open-archive"], out=out, database=db) == 1
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines  # no table of mismatches
    assert "lab endpoints were not scanned, blocked by" in lines[0] and "opt-out" in lines[0]


def test_lab_help_names_the_addresses_and_ports(capsys):
    from pacswatch.cli import main

    with pytest.raises(SystemExit):
        main(["lab", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "127.42.0.0/24" in shown and "port 11112" in shown and "2762" in shown and "8040" in shown


def test_the_scans_first_line_names_its_event_loop_and_engine(tmp_path, capsys):
    """Issue 12, item 13: the first line says what the speed depends on."""
    from pacswatch.cli import main

    lab = start_demo_lab(fresh_base(), names=["echo-only"])
    try:
        (endpoint,) = lab.manifest
        code = main(["scan", f"{endpoint.ip}:{endpoint.port}", "--database", str(tmp_path / "s.db"), "--no-progress",
                     "-o", str(tmp_path / "s.jsonl"), "--no-attribute"])
    finally:
        lab.stop()
    assert code == 0
    shown = " ".join(capsys.readouterr().err.split())
    assert shown.startswith("pacswatch ") and shown.index("event loop uvloop") < shown.index("scan 1 finished")
