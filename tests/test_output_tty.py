"""What an operator sees: `scan` on a terminal (a pseudo-terminal here) prints a table of what
answered, most severe first and cut at --top, and JSON Lines to a file or a pipe; --open; the
sort orders of findings, changes and stats; help text and type names of every option."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess

import pytest
from ptyrun import PACSWATCH, plain
from ptyrun import run_on_terminal as _run_on_terminal

from pacswatch.lab.runner import Lab

# One lab per module; these four answer with four different severities.
KINDS = {"open-archive": "critical", "find-empty": "high", "echo-only": "medium", "ae-restricted": "low"}


def run_on_terminal(args, **kw) -> tuple[int, str, str]:
    code, shown, stderr = _run_on_terminal(args, **kw)
    return code, plain(shown), stderr


def run(args, **kw):
    return subprocess.run(PACSWATCH + args, check=False, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def lab():
    base = f"127.93.{os.getpid() % 200}.0"
    with Lab(base, port=0, names=list(KINDS)) as running:
        yield running


@pytest.fixture
def closed_port():
    """A port on loopback where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.93.250.1", 0))
        return s.getsockname()[1]


def endpoints(lab) -> list[str]:
    return [f"{ip}:{port}" for ip, port in (lab.endpoint(kind).address for kind in KINDS)]


def table_rows(text: str) -> list[str]:
    """The endpoint column of the rows of a Rich table, top to bottom."""
    return re.findall(r"^\S\s*(127\.[0-9.]+:\d+)\s", text, re.MULTILINE)


def test_scan_on_a_terminal_prints_a_table_most_severe_first_not_json(lab, tmp_path, closed_port):
    db = str(tmp_path / "tty.db")
    code, shown, stderr = run_on_terminal(["scan", *endpoints(lab), f"127.93.250.1:{closed_port}", "--database", db,
                                           "--no-progress", "--timeout", "2"])
    assert code == 0, stderr
    assert not any(line.lstrip().startswith("{") for line in shown.splitlines()), shown  # no JSON on a terminal
    rows = table_rows(shown)
    severities = [next(KINDS[k] for k in KINDS if f"{lab.endpoint(k).address[0]}:{lab.endpoint(k).address[1]}" == row)
                  for row in rows]
    assert severities == ["critical", "high", "medium", "low"], shown
    assert f"127.93.250.1:{closed_port}" not in shown  # the table shows what answered
    # The summary and the changes go to stderr, as before.
    assert "Scan summary" in stderr and "Changes in scan" in stderr


def test_the_terminal_table_stops_at_top_and_names_the_command_for_the_rest(lab, tmp_path):
    db = str(tmp_path / "top.db")
    code, shown, stderr = run_on_terminal(["scan", *endpoints(lab), "--database", db, "--no-progress", "--top", "2",
                                           "--timeout", "2"])
    assert code == 0, stderr
    assert len(table_rows(shown)) == 2, shown
    scan_id = json.loads(run(["scans", "--database", db, "--format", "json"]).stdout)[0]["id"]
    assert f"... and 2 more: pacswatch findings --scan {scan_id}" in shown
    # The changes since the last scan (on stderr) are cut the same way, most severe first.
    changes = stderr[stderr.index("Changes in scan"):]
    assert [KINDS[k] for k in KINDS if lab.endpoint(k).address[0] in changes] == ["critical", "high"], changes
    assert f"... and 2 more: pacswatch findings --scan {scan_id}" in changes
    # That command lists them all: the worst first, then by address.
    listed = run(["findings", "--database", db, "--scan", str(scan_id), "--format", "json"])
    assert listed.returncode == 0, listed.stderr
    assert [r["severity"] for r in json.loads(listed.stdout)] == ["critical", "high", "medium", "low"]


def test_json_lines_on_a_terminal_with_format_or_a_file(lab, tmp_path):
    db = str(tmp_path / "jsonl.db")
    code, shown, stderr = run_on_terminal(["scan", *endpoints(lab)[:1], "--database", db, "--no-progress",
                                           "--format", "jsonl", "--timeout", "2"])
    assert code == 0, stderr
    (line,) = [x for x in shown.splitlines() if x.strip()]
    assert json.loads(line)["severity"] == "critical"
    out = tmp_path / "out.jsonl"
    code, shown, stderr = run_on_terminal(["scan", *endpoints(lab)[:1], "--database", db, "--no-progress",
                                           "-o", str(out), "--timeout", "2"])
    assert code == 0, stderr
    assert shown.strip() == "" and json.loads(out.read_text())["severity"] == "critical"


def test_open_writes_only_the_endpoints_that_answered_and_stores_them_all(lab, tmp_path, closed_port):
    db = str(tmp_path / "open.db")
    refused = f"127.93.250.1:{closed_port}"
    result = run(["scan", *endpoints(lab)[:2], refused, "--database", db, "--open", "--keep-all", "--timeout", "2",
                  "--quiet"])
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["severity"] for r in records) == ["critical", "high"]
    (scan,) = json.loads(run(["scans", "--database", db, "--format", "json"]).stdout)
    assert scan["done"] == scan["plan_size"] == 3  # the silent one is done, only not written
    without = run(["scan", *endpoints(lab)[:1], refused, "--database", db, "--timeout", "2", "--quiet"])
    assert [json.loads(line)["status"] for line in without.stdout.splitlines()].count("connection-refused") == 1


def test_findings_sort_by_severity_then_numeric_address(tmp_path):
    from pacswatch.campaign.report import by_severity

    rows = [{"ip": ip, "port": port, "severity": severity} for ip, port, severity in (
        ("10.0.0.10", 104, "high"), ("10.0.0.9", 4242, "high"), ("10.0.0.9", 104, "high"),
        ("2001:db8::1", 1, "critical"), ("9.9.9.9", 1, None), ("10.0.0.200", 1, "critical"))]
    assert [(r["ip"], r["port"]) for r in by_severity(rows)] == [
        ("10.0.0.200", 1), ("2001:db8::1", 1), ("10.0.0.9", 104), ("10.0.0.9", 4242), ("10.0.0.10", 104),
        ("9.9.9.9", 1)]


def test_stats_list_severities_in_severity_order_not_by_count():
    from rich.console import Console

    from pacswatch.campaign.report import stats_tables

    stats = {"now": {"exposed_services": 9, "studies": 0, "patients": 0}, "findings_by_status": {"open": 9},
             "findings_by_severity": {"low": 5, "critical": 1, "medium": 3}, "exposed_by_product": {},
             "exposed_by_port": {}, "over_time": []}
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(stats_tables(stats)[1])
    text = console.export_text()
    assert text.index("critical") < text.index("medium") < text.index("low")


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("pacswatch",)):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield " ".join(path), action


def test_every_option_of_every_command_has_help_and_a_readable_type_name():
    from pacswatch.cli import build_parser

    options = list(_options(build_parser()))
    assert len(options) > 100  # the walk reached the subcommands
    missing = [f"{where} {'/'.join(a.option_strings) or a.dest}" for where, a in options
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
    # argparse words a bad value with the type's __name__: no "_positive_int", no bare "int".
    unreadable = [f"{where} {'/'.join(a.option_strings) or a.dest}: {a.type!r}" for where, a in options
                  if a.type is not None and (a.type in (int, float) or a.type.__name__.startswith("_"))]
    assert unreadable == []


@pytest.mark.parametrize(("args", "says"), [
    (["scan", "127.0.0.1", "--rate", "abc"], "invalid rate: 'abc' is not a number"),
    (["scan", "127.0.0.1", "--rate", "nan"], "invalid rate: 'nan' is not a number"),
    (["scan", "127.0.0.1", "--concurrency", "1.5"], "invalid concurrency: '1.5' is not a whole number"),
    (["scan", "127.0.0.1", "--top", "-1"], "invalid row count: must be at least 0"),
    (["run", "--tick", "0"], "invalid tick: must be greater than 0"),
    (["findings", "--scan", "x"], "invalid scan ID: 'x' is not a whole number"),
])
def test_a_bad_number_is_named_for_what_it_is(args, says):
    result = run(args)
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_scan_help_shows_the_default_ports():
    from pacswatch.targets.ports import DEFAULT_DICOM_PORTS

    text = " ".join(run(["scan", "--help"], env={**os.environ, "COLUMNS": "400"}).stdout.split())
    assert ", ".join(map(str, DEFAULT_DICOM_PORTS)) in text


def test_an_empty_target_file_is_an_error_not_an_empty_scan(tmp_path):
    empty = tmp_path / "targets.txt"
    empty.write_text("# nothing yet\n\n")
    result = run(["scan", f"@{empty}", "--database", str(tmp_path / "e.db")])
    assert result.returncode == 2 and "no targets in it" in result.stderr, result.stderr


def test_scans_shows_the_targets(lab, tmp_path):
    db = str(tmp_path / "scans.db")
    first = endpoints(lab)[0]
    assert run(["scan", first, "--database", db, "--quiet", "--timeout", "2"]).returncode == 0
    listed = run(["scans", "--database", db])
    assert listed.returncode == 0 and first in listed.stdout, listed.stdout


def test_a_scan_started_without_main_still_writes_json_lines(lab, tmp_path):
    # `pacswatch demo` runs campaign_scan with the parser's arguments, not through main(): the
    # default format is decided where the scan is, or its records file stays empty.
    from pacswatch.campaign.commands import campaign_scan
    from pacswatch.cli import build_parser
    from pacswatch.cli.scan import scan_settings
    from pacswatch.output import stderr_console

    out = tmp_path / "records.jsonl"
    args = build_parser().parse_args(["scan", endpoints(lab)[0], "--output", str(out), "--quiet", "--timeout", "2",
                                      "--no-attribute", "--database", str(tmp_path / "direct.db")])
    assert campaign_scan(scan_settings(args), stderr_console()) == 0
    assert json.loads(out.read_text())["severity"] == "critical"
