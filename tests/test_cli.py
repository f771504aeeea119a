"""The command line as a user runs it: clear errors on bad input, Ctrl-C keeps what was written."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]


def run(args, **kw):
    return subprocess.run(PACSWATCH + args, capture_output=True, text=True, timeout=60, **kw)


def test_malformed_targets_give_one_clear_error_and_scan_nothing(tmp_path):
    targets = tmp_path / "targets.txt"
    targets.write_text("127.0.0.1\n# a comment\n127.0.0.300\n\nnot a host!\n127.0.0.0/33\n")
    out = tmp_path / "out.jsonl"
    result = run(["scan", f"@{targets}", "--ports", "11112", "-o", str(out)])
    assert result.returncode == 2
    # Every bad line is named with its line number, not just the first.
    for line_no in (3, 5, 6):
        assert f"line {line_no}:" in result.stderr, result.stderr
    assert not out.exists() or out.read_text() == ""


def test_bad_port_list_is_a_usage_error():
    result = run(["scan", "127.0.0.1", "--ports", "104,70000"])
    assert result.returncode == 2 and "70000" in result.stderr


def test_documentation_range_is_blocked_and_reported(tmp_path):
    result = run(["scan", "192.0.2.7", "--ports", "104", "--no-progress"])
    assert result.returncode == 0
    record = json.loads(result.stdout.splitlines()[0])
    assert record["status"] == "blocked" and record["ip"] == "192.0.2.7"


def test_ctrl_c_stops_cleanly_and_keeps_written_records(tmp_path):
    # Tarpits: accept and never answer, so every endpoint runs into its deadline.
    listeners = []
    for _ in range(12):
        s = socket.socket()
        s.bind(("127.0.0.63", 0))
        s.listen(64)
        listeners.append(s)
    ports = ",".join(str(s.getsockname()[1]) for s in listeners)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(PACSWATCH + ["scan", "127.0.0.63", "--ports", ports, "-o", str(out), "--timeout", "0.5",
                                         "--concurrency", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        for s in listeners:
            s.close()
    assert proc.returncode == 130, stderr
    lines = out.read_text().splitlines()
    assert 2 <= len(lines) < 12
    for line in lines:
        assert json.loads(line)["status"] == "io-timeout"
    assert "interrupted" in stderr


@pytest.mark.parametrize("args", [["scan"], ["probe"], ["scan", "127.0.0.1", "--rate", "0"]])
def test_usage_errors_exit_2(args):
    assert run(args).returncode == 2


def test_schema_command_prints_json_schema():
    result = run(["schema"])
    assert json.loads(result.stdout)["title"] == "pacswatch observation record"


def test_owner_and_case_commands_are_wired_into_the_main_cli(tmp_path):
    db = str(tmp_path / "owners.db")
    added = run(["owners", "add", "192.0.2.0/24", "--name", "Example Hospital", "--contact", "abuse@example.org",
                 "--database", db])
    assert added.returncode == 0, added.stderr
    listed = run(["owners", "list", "--database", db])
    assert listed.returncode == 0 and "Example Hospital" in listed.stdout
    assert run(["cases", "--database", db]).returncode == 0


def _loaded_after(code: str, **kw) -> set[str]:
    """The modules a fresh interpreter has imported after running `code`, which must print
    json.dumps(sorted(sys.modules)) as its last line."""
    env = {k: v for k, v in os.environ.items() if k != "PACSWATCH_NOTIFY_CONFIG"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, **kw)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def _modules_after(code: str, **kw) -> set[str]:
    """Top-level packages a fresh interpreter has imported after running `code` (as above)."""
    return {name.split(".")[0] for name in _loaded_after(code, **kw)}


# Packages only other commands use (attribution, notices, the web probe, migrations): a scan
# that finds nothing exposed must not pay for importing them.
NOT_FOR_A_SCAN = {"httpx", "httpcore", "jinja2", "dns", "pydicom", "alembic", "cryptography"}


def test_a_scan_does_not_import_what_only_other_commands_use(tmp_path):
    out, db = tmp_path / "out.jsonl", tmp_path / "scan.db"
    # A new database file is created by the migrations (alembic): once, not on every scan.
    assert run(["scan", "127.0.0.1", "--ports", "1", "--quiet", "-o", str(out), "--database", str(db)]).returncode == 0
    code = ("import json, sys\n"
            "from pacswatch.cli import main\n"
            f"assert main(['scan', '127.0.0.1', '--ports', '1', '--quiet', '-o', {str(out)!r},"
            f" '--database', {str(db)!r}]) == 0\n"
            "print(json.dumps(sorted(sys.modules)))")
    modules = _loaded_after(code)
    loaded = {name.split(".")[0] for name in modules}
    assert json.loads(out.read_text())["status"] == "connection-refused"  # it did scan (port 1 is closed)
    assert "sqlalchemy" in loaded and "pacswatch" in loaded
    assert not loaded & NOT_FOR_A_SCAN, sorted(loaded & NOT_FOR_A_SCAN)
    # No notify configuration named and nothing exposed: neither its models nor the owners'
    # look-up are imported.
    assert not {m for m in modules if m == "pacswatch.notify.config" or m.startswith("pacswatch.attribution")}


def test_attributing_a_scans_loopback_findings_loads_no_http_stack(tmp_path):
    # Attribution runs after every scan that found something; for local and special addresses
    # it asks nothing over HTTP, so httpx (a quarter second to import) is not loaded.
    import sqlite3

    from pacswatch.lab.fast import FastResponder

    out, db = tmp_path / "out.jsonl", tmp_path / "scan.db"
    with FastResponder(["127.44.8.1"], ports=[0], workers=0) as responder:
        (ip, port), = responder.endpoints
        args = ["scan", ip, "--ports", str(port), "--quiet", "-o", str(out), "--database", str(db)]
        assert run(args).returncode == 0  # creates the database (alembic) first
        loaded = _modules_after("import json, sys\n"
                                "from pacswatch.cli import main\n"
                                f"assert main({args!r}) == 0\n"
                                "print(json.dumps(sorted(sys.modules)))")
    assert json.loads(out.read_text().splitlines()[-1])["severity"] == "high"
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from attributions where ip = ?", (ip,)).fetchone() == (1,)
    assert not loaded & {"httpx", "httpcore"}, sorted(loaded & {"httpx", "httpcore"})


def test_building_the_parser_loads_neither_the_store_nor_the_probes():
    # --help, --version and usage errors need the parser only.
    loaded = _modules_after("import json, sys\n"
                            "from pacswatch.cli import build_parser\n"
                            "build_parser()\n"
                            "print(json.dumps(sorted(sys.modules)))")
    assert "pacswatch" in loaded
    assert not loaded & {"sqlalchemy", "pydantic", "cryptography", *NOT_FOR_A_SCAN}


@pytest.fixture(scope="module")
def demo_lab():
    from pacswatch.lab.runner import Lab
    from pacswatch.lab.web import start_web_lab

    with Lab("127.44.7.0", port=0, names=["open-archive", "ae-restricted"]) as lab:
        web = start_web_lab("127.44.7.40", "127.44.7.41", kinds=("orthanc-open",))
        try:
            yield lab, web
        finally:
            web.stop()


def test_probe_prints_a_full_report_for_a_person(demo_lab):
    lab, _ = demo_lab
    ip, port = lab.endpoint("open-archive").address
    assert ip.startswith("127.")
    result = run(["probe", f"{ip}:{port}", "--timeout", "2"])
    assert result.returncode == 0, result.stderr
    assert "severity: critical" in result.stdout
    assert "C-FIND allowed" in result.stdout and "released cleanly" in result.stdout
    ip, port = lab.endpoint("ae-restricted").address
    result = run(["probe", f"{ip}:{port}", "--json", "--no-ae-guess", "--timeout", "2"])
    record = json.loads(result.stdout)
    assert record["status"] == "rejected" and record["dicom"]["association"]["reject"]["reason"] == \
        "called-ae-not-recognized"


def test_probe_of_a_web_endpoint_shows_the_web_facts(demo_lab):
    _, web = demo_lab
    ep = web.endpoints[0]
    assert ep.ip.startswith("127.")
    result = run(["probe", f"{ep.ip}:{ep.port}", "--web", "--timeout", "2"])
    assert result.returncode == 0, result.stderr
    assert "Orthanc" in result.stdout and "studies" in result.stdout and "auth" in result.stdout


def test_an_output_that_cannot_be_written_stops_the_scan_and_counts_nothing_it_lacks_as_done(tmp_path):
    """A full disk (/dev/full): the scan stops with a clear error; the database counts done only
    what reached the output (nothing here), so the resumed scan probes every endpoint and its
    output gets them all."""
    from pacswatch.lab.fast import FastResponder, loopback_addresses
    from pacswatch.store import Repository

    database = tmp_path / "pacswatch.db"
    with FastResponder(loopback_addresses(120, "127.44.9.0"), ports=[0], workers=0) as responder:
        targets = tmp_path / "targets.txt"
        targets.write_text("".join(f"{ip}:{port}\n" for ip, port in responder.endpoints))
        failed = run(["scan", f"@{targets}", "--concurrency", "50", "--rate", "100000", "--no-progress",
                      "--no-attribute", "--output", "/dev/full", "--database", str(database)])
        assert failed.returncode == 1, failed.stderr
        assert "cannot write the output: No space left on device" in failed.stderr, failed.stderr
        assert "pacswatch scan --resume 1" in failed.stderr
        with Repository.open(str(database)) as repo:
            scan = repo.scan(1)
        assert scan["status"] == "interrupted" and scan["done"] == 0, scan
        out = tmp_path / "out.jsonl"
        resumed = run(["scan", "--resume", "1", "--no-progress", "--no-attribute", "--output", str(out),
                       "--database", str(database)])
        assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["ip"], r["port"]) for r in records) == sorted(responder.endpoints)
    assert {r["status"] for r in records} == {"success"}


def test_probe_without_a_port_tries_the_default_dicom_ports_and_reports_those_that_answer():
    from pacswatch.lab.fast import FastResponder
    from pacswatch.targets.ports import DEFAULT_DICOM_PORTS

    with FastResponder(["127.44.10.1"], ports=[11112], workers=0):
        done = run(["probe", "127.44.10.1"])
        as_json = run(["probe", "127.44.10.1", "--json"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("127.44.10.1:11112 over tcp: status success"), done.stdout
    assert "no service on 127.44.10.1: 104 (connection-refused)" in done.stdout
    records = json.loads(as_json.stdout)
    assert sorted(r["port"] for r in records) == sorted(DEFAULT_DICOM_PORTS)
    assert {r["port"] for r in records if r["service"] == "dicom"} == {11112}
    network = run(["probe", "127.44.10.0/24"])
    assert network.returncode == 2 and "for networks, use scan" in network.stderr


def test_output_dash_is_standard_output_not_a_file_named_dash(tmp_path):
    from pacswatch.lab.fast import FastResponder

    with FastResponder(["127.44.11.1"], ports=[0], workers=0) as responder:
        ((ip, port),) = responder.endpoints
        done = run(["scan", f"{ip}:{port}", "--quiet", "--no-attribute", "-o", "-",
                    "--database", str(tmp_path / "pacswatch.db")], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (record["ip"], record["port"], record["status"]) == (ip, port, "success")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("url, says", [
    ("https://cert:s3cret@example.org/scanning", "names a user or password"),
    ("https://example.org/a b", "a space or a control character"),
    ("ftp://example.org/", "is not an http://, https:// or mailto: address"),
])
def test_a_contact_url_with_a_password_or_not_a_web_address_is_refused(tmp_path, url, says):
    # The contact URL is sent in every request's User-Agent and stored with the scan's
    # parameters (which `scans --format json` prints): a password there is a mistake to stop.
    database = str(tmp_path / "pacswatch.db")
    refused = run(["scan", "127.0.0.1", "--ports", "9", "--contact-url", url, "--database", database])
    assert refused.returncode == 2, refused.stderr
    assert "argument --contact-url: invalid contact URL" in refused.stderr and says in refused.stderr
    assert "s3cret" not in refused.stderr and not os.path.exists(database)
    taken = run(["scan", "127.0.0.1", "--ports", "9", "--no-progress", "--no-attribute", "--quiet", "--database",
                 database, "--contact-url", "mailto:cert@example.org"])
    assert taken.returncode == 0, taken.stderr
    (scan,) = json.loads(run(["scans", "--database", database, "--format", "json"]).stdout)
    assert scan["parameters"]["probe"]["contact_url"] == "mailto:cert@example.org"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every runnable command of the parser, as its words (`db check`, `optout add` ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    yield from _commands(sub, (*path, name))
                else:
                    yield (*path, name), sub


def test_every_command_has_a_handler_that_main_calls():
    # The command-module contract (cli/__init__.py): each command sets `handler`, main calls it.
    from pacswatch.cli import build_parser

    commands = dict(_commands(build_parser()))
    assert len(commands) >= 25 and ("db", "check") in commands and ("config", "init") in commands
    missing = [" ".join(words) for words, sub in commands.items() if not callable(sub.get_default("handler"))]
    assert missing == []


def test_main_runs_a_registered_module_through_its_handler(monkeypatch, capsys):
    # A new command group plugs in by register(sub) alone; its handler's return is the exit code.
    import pacswatch.cli as cli

    class Hello:
        @staticmethod
        def register(sub) -> None:
            hello = sub.add_parser("hello", help="say hello")
            hello.add_argument("--code", type=int, default=0, help="exit code")
            hello.set_defaults(handler=lambda args: print("hello") or args.code)

    monkeypatch.setattr(cli, "COMMAND_GROUPS", (*cli.COMMAND_GROUPS, Hello))
    assert cli.main(["hello", "--code", "3"]) == 3
    assert capsys.readouterr().out == "hello\n"


def test_the_namespace_never_leaves_the_command_line():
    # cli/ turns the arguments into typed settings; no module below it imports argparse or
    # takes a Namespace (the probes once knew the command line's shape).
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "pacswatch"
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.relative_to(src).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if "argparse" in names or (isinstance(node, ast.Attribute) and node.attr == "Namespace"):
                found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert found == []
