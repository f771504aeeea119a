"""The campaign commands as a user runs them, in real subprocesses: a scan killed with SIGKILL
and resumed, opt-out, imports, queries, the database commands, `run --once`.

Every server here is on loopback; the watched listeners count each connection they get.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pacswatch.lab.fast import FastResponder
from pacswatch.store import Repository

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
NET = f"127.54.{os.getpid() % 200}"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(args, url, timeout=120, **kw):
    return subprocess.run(PACSWATCH + args + ["--database", url], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


class Listeners:
    """Listening sockets on one loopback address, each counting the connections it is given."""

    def __init__(self, ip: str, count: int) -> None:
        self.socks = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind((ip, 0))
            sock.listen(128)
            self.socks.append(sock)
        self.ip = ip
        self.counts = {s.getsockname()[1]: 0 for s in self.socks}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.ip}:{port}" for port in self.counts]

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self.socks:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    conn, _ = key.fileobj.accept()
                    self.counts[key.fileobj.getsockname()[1]] += 1
                    conn.close()

    def reset(self) -> None:
        time.sleep(0.3)  # let the last connections be counted
        for port in self.counts:
            self.counts[port] = 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


@pytest.fixture
def listeners():
    made = []

    def make(ip, count=1):
        made.append(Listeners(ip, count))
        return made[-1]

    yield make
    for item in made:
        item.close()


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outcome_set(recs) -> set:
    return {(r["ip"], r["port"], r["status"], r["severity"]) for r in recs}


# --- resume after SIGKILL -----------------------------------------------------------------------


def test_scan_killed_with_sigkill_resumes_to_the_same_results(database_url, tmp_path, listeners):
    counted = listeners(f"{NET}.10", 40)
    with FastResponder([f"{NET}.11"], [0] * 1, workers=0) as fast1, FastResponder([f"{NET}.12"], [0], workers=0) as fast2:
        answering = [f"{ip}:{port}" for ip, port in fast1.endpoints + fast2.endpoints]
        targets = tmp_path / "targets.txt"
        targets.write_text("\n".join(counted.endpoints + answering) + "\n")
        common = ["scan", f"@{targets}", "--seed", "7", "--timeout", "2", "--concurrency", "4", "--no-progress",
                  "--keep-all"]

        # The reference: the same scan, uninterrupted, in a database of its own.
        reference = run(common + ["-o", str(tmp_path / "ref.jsonl")], f"sqlite:///{tmp_path / 'ref.db'}")
        assert reference.returncode == 0, reference.stderr
        baseline = dict(counted.counts)
        assert all(n >= 1 for n in baseline.values())
        counted.reset()

        first_out, second_out = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        proc = subprocess.Popen(PACSWATCH + common + ["--rate", "12", "-o", str(first_out), "--database", database_url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            done = 0
            while time.time() < deadline and done < 15:
                time.sleep(0.2)
                with Repository.open(database_url) as repo:
                    scan = repo.scan(1)
                    done = scan["done"] if scan else 0
            assert done >= 15, proc.stderr.read() if proc.poll() is not None else "scan too slow"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        with Repository.open(database_url) as repo:
            killed = repo.scan(1)
        assert killed["status"] == "running" and killed["done"] < killed["plan_size"] == 42

        resumed = run(["scan", "--resume", "1", "--no-progress", "-o", str(second_out)], database_url)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming scan 1" in resumed.stderr

    # The union of both runs is the uninterrupted scan, record for record.
    assert outcome_set(records(first_out) + records(second_out)) == outcome_set(records(tmp_path / "ref.jsonl"))
    # Nothing probed twice beyond the work in flight when it was killed (4 probes) and the
    # records not yet committed (one flush interval at 12 connections/s).
    again = [port for port, n in counted.counts.items() if n > baseline[port]]
    print(f"SIGKILL after {killed['done']} of 42 done: {len(again)} of 40 watched endpoints probed again")
    assert all(counted.counts[p] >= baseline[p] for p in counted.counts)
    assert len(again) <= 4 + 4, (again, killed["done"])
    with Repository.open(database_url) as repo:
        scan = repo.scan(1)
        assert scan["status"] == "finished" and scan["done"] == 42
        assert repo.completed(1).intervals() == [(0, 41)]
        stored = {(o["ip"], o["port"]) for o in repo.observations(scan_id=1)}
        assert len(stored) == 42
        assert {f["ip"] for f in repo.findings()} == {f"{NET}.11", f"{NET}.12"}
    assert "nothing to resume" in run(["scan", "--resume", "1"], database_url).stderr


def test_resume_errors(sqlite_url, tmp_path):
    assert "no scan 5" in run(["scan", "--resume", "5"], sqlite_url).stderr
    result = run(["scan", "--resume", "5", "127.0.0.1"], sqlite_url)
    assert result.returncode == 2 and "takes no targets" in result.stderr
    assert run(["scan"], sqlite_url).returncode == 2


def test_resuming_a_scan_without_a_stored_plan_is_a_clear_error(sqlite_url):
    """A scan row another tool wrote (bench/db_bench.py stores parameters {}) is refused in a
    sentence, not with a KeyError's traceback (found by hand: `scan --resume` of such a row)."""
    with Repository.open(sqlite_url) as repo:
        repo.create_scan(kind="scan", parameters={}, seed=0, fingerprint="f" * 64, targets_key="t", plan_size=10)
    result = run(["scan", "--resume", "1"], sqlite_url)
    assert result.returncode == 1, result.stderr
    assert "scan 1 has no stored plan" in result.stderr and "Traceback" not in result.stderr


# --- opt-out, scope, imports --------------------------------------------------------------------


def test_optout_blocks_and_is_reported(sqlite_url, tmp_path, listeners):
    watched = listeners(f"{NET}.20")
    added = run(["optout", "add", f"{NET}.20", "--contact", "pacs-admin@hospital.example", "--note", "by phone"],
                sqlite_url)
    assert added.returncode == 0 and "optout entry 1" in added.stdout
    listing = json.loads(run(["optout", "list", "--format", "json"], sqlite_url).stdout)
    assert listing[0]["cidr"] == f"{NET}.20" and listing[0]["contact"] == "pacs-admin@hospital.example"

    result = run(["scan", *watched.endpoints, "--no-progress", "--timeout", "1"], sqlite_url)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["status"] == "blocked" and "opt-out" in record["detail"]
    probe = run(["probe", watched.endpoints[0], "--timeout", "1"], sqlite_url)
    assert probe.returncode == 2 and "opt-out" in probe.stderr
    time.sleep(0.3)
    assert watched.counts == {int(watched.endpoints[0].split(":")[1]): 0}

    assert run(["optout", "remove", "1"], sqlite_url).returncode == 0
    assert run(["optout", "remove", "1"], sqlite_url).returncode == 2
    result = run(["scan", *watched.endpoints, "--no-progress", "--timeout", "1"], sqlite_url)
    assert json.loads(result.stdout.splitlines()[0])["status"] != "blocked"
    time.sleep(0.3)
    assert sum(watched.counts.values()) >= 1


def test_scope_in_the_database(sqlite_url, listeners):
    inside, outside = listeners(f"{NET}.30"), listeners(f"{NET}.31")
    assert run(["scope", "add", f"{NET}.30/32", "--note", "authorised"], sqlite_url).returncode == 0
    assert run(["scope", "add", "127.0.0.1/8"], sqlite_url).returncode == 2  # host bits set: refused
    result = run(["scan", *inside.endpoints, *outside.endpoints, "--no-progress", "--timeout", "1"], sqlite_url)
    by_ip = {json.loads(line)["ip"]: json.loads(line) for line in result.stdout.splitlines()}
    assert by_ip[f"{NET}.31"]["status"] == "blocked" and "scope" in by_ip[f"{NET}.31"]["detail"]
    time.sleep(0.3)
    assert sum(outside.counts.values()) == 0 and sum(inside.counts.values()) >= 1


def test_import_masscan_probes_only_what_it_lists(sqlite_url, tmp_path, listeners):
    listed, unlisted = listeners(f"{NET}.40"), listeners(f"{NET}.40")
    port = listed.endpoints[0].split(":")[1]
    masscan = tmp_path / "masscan.txt"
    masscan.write_text(f"#masscan\nopen tcp {port} {NET}.40 1700000000\n# end\n")
    result = run(["scan", "--import-masscan", str(masscan), "--no-progress", "--timeout", "1"], sqlite_url)
    assert result.returncode == 0, result.stderr
    assert [(r["ip"], r["port"]) for r in map(json.loads, result.stdout.splitlines())] == [(f"{NET}.40", int(port))]
    time.sleep(0.3)
    assert sum(listed.counts.values()) >= 1 and sum(unlisted.counts.values()) == 0


# --- queries -------------------------------------------------------------------------------------


def test_findings_history_stats_scans(database_url, tmp_path):
    with FastResponder([f"{NET}.50", f"{NET}.51"], [0], workers=0) as fast:
        endpoints = [f"{ip}:{port}" for ip, port in fast.endpoints]
        result = run(["scan", *endpoints, "--no-progress", "--timeout", "2"], database_url)
        assert result.returncode == 0, result.stderr
        assert "2 new, 0 fixed, 0 reopened" in result.stderr
    result = run(["scan", *endpoints, "--no-progress", "--timeout", "1"], database_url)  # now closed
    # One miss fixes nothing (the two-miss rule); the second, 0 s or more later here, does.
    assert "0 new, 0 fixed" in result.stderr and "since scan 1 of the same targets" in result.stderr
    result = run(["scan", *endpoints, "--no-progress", "--timeout", "1", "--confirm-fixed-after", "0"], database_url)
    assert "0 new, 2 fixed" in result.stderr and "since scan 2 of the same targets" in result.stderr

    data = json.loads(run(["findings", "--format", "json"], database_url).stdout)
    assert {(f["ip"], f["status"], f["severity"]) for f in data} == {(f"{NET}.50", "fixed", "high"),
                                                                     (f"{NET}.51", "fixed", "high")}
    assert [h["kind"] for h in data[0]["history"]] == ["new", "missed", "fixed"]
    assert run(["findings", "--status", "open", "--format", "json"], database_url).stdout.strip() == "[]"
    csv_out = run(["findings", "--severity", "high,critical", "--since", "1d", "--format", "csv"], database_url).stdout
    assert csv_out.splitlines()[0].startswith("id,ip,port,severity,status") and len(csv_out.splitlines()) == 3
    assert f"{NET}.50" in run(["findings"], database_url).stdout
    assert run(["findings", "--severity", "urgent"], database_url).returncode == 2

    history = run(["history", endpoints[0]], database_url)
    assert history.returncode == 0 and "connection-refused" in history.stdout and "fixed" in history.stdout
    data = json.loads(run(["history", endpoints[0].split(":")[0], "--format", "json"], database_url).stdout)
    assert [o["status"] for o in data["observations"]] == ["success", "connection-refused", "connection-refused"]

    stats = json.loads(run(["stats", "--format", "json"], database_url).stdout)
    assert stats["findings_by_status"] == {"fixed": 2} and stats["now"]["exposed_services"] == 0
    assert [s["exposed_services"] for s in stats["over_time"]] == [2, 0, 0]
    assert "Exposure now" in run(["stats"], database_url).stdout
    scans = json.loads(run(["scans", "--format", "json"], database_url).stdout)
    assert [(s["id"], s["status"]) for s in scans] == [(3, "finished"), (2, "finished"), (1, "finished")]


def test_run_once_rescans_what_is_due(sqlite_url, tmp_path):
    with FastResponder([f"{NET}.60"], [0], workers=0) as fast:
        endpoint = "{}:{}".format(*fast.endpoints[0])
        assert run(["scan", endpoint, "--no-progress", "-q"], sqlite_url).returncode == 0
        quiet = run(["run", "--once"], sqlite_url)
        assert quiet.returncode == 0 and "rescan" not in quiet.stderr  # nothing due yet
        path = sqlite_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE services SET next_due = '2000-01-01 00:00:00'")
        conn.close()
        result = run(["run", "--once", "--rate", "50"], sqlite_url)
        assert result.returncode == 0, result.stderr
        assert "rescan 2: 1 services due" in result.stderr
    scans = json.loads(run(["scans", "--format", "json"], sqlite_url).stdout)
    assert [(s["kind"], s["status"]) for s in scans] == [("rescan", "finished"), ("scan", "finished")]


# --- the database commands ------------------------------------------------------------------------


def test_db_upgrade_and_info(tmp_path):
    from alembic import command
    from sqlalchemy import create_engine

    from pacswatch.store.engine import _script, alembic_config

    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = run(["db", "upgrade"], url)
    assert result.returncode == 0 and "state: current" in result.stdout
    assert f"revision: {_script().get_current_head()}" in result.stdout
    assert "backend: sqlite" in run(["db", "info"], url).stdout

    # An SQLite file at the first revision is migrated on open, a copy kept beside it.
    old = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(old)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_initial")
    engine.dispose()
    assert run(["findings"], old).returncode == 0
    assert "state: current" in run(["db", "info"], old).stdout
    if _script().get_current_head() != "0001_initial":
        assert (tmp_path / "old.db.before-0001_initial").exists()


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_damaged_or_newer_database_is_refused_untouched(tmp_path, damage):
    path = tmp_path / "db.sqlite"
    url = f"sqlite:///{path}"
    assert run(["db", "upgrade"], url).returncode == 0
    if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 1000)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0042_newer'")
        conn.close()
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    for args in (["findings"], ["db", "upgrade"], ["scan", "127.0.0.1:9"]):
        result = run(args, url)
        assert result.returncode == 1, (args, result.stderr)
        assert ("not an SQLite database" if damage == "garbage" else "newer than this pacswatch") in result.stderr
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_history_of_a_name_that_does_not_resolve_says_which(tmp_path, monkeypatch, capsys):
    import pacswatch.targets
    from pacswatch.cli import main

    def no_such_name(name):  # in place of the system resolver: no DNS query leaves this test
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(pacswatch.targets, "system_resolver", no_such_name)
    assert main(["history", "pacs.example.org", "--database", str(tmp_path / "pacswatch.db")]) == 2
    err = capsys.readouterr().err
    assert "cannot resolve 'pacs.example.org' (Name or service not known)" in err, err
