"""Scope everywhere: the blocklist, the opt-out list and the database's scope hold for `scan`,
`probe`, imports and a scan already running, however an address is spelled (IPv4-mapped IPv6
in either direction); input that is refused is refused before any lookup or connection.

Every server here listens on loopback and counts (with the time) each connection it is given;
the subprocesses run with an audit hook that records any host-name lookup (tests/hostile:
LOOKUP_HOOK), and no test lets one reach the system resolver.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pacswatch.campaign.scope import (
    POLL_SECONDS,
    LiveBlocklist,
    campaign_blocklist,
    campaign_scope,
    normalize_network,
    optout_entries,
    scope_reason,
)
from pacswatch.store import Repository
from pacswatch.targets import Blocklist, Scope, TargetError
from pacswatch.targets.blocklist import load_exclude_file
from pacswatch.targets.imports import read_masscan_json, read_zmap_csv
from pacswatch.scan.runner import probe_endpoint

PACSWATCH = [sys.executable, "-m", "pacswatch.cli"]
SECOND = os.getpid() % 200 + 20  # this session's 127.6x.N.0/24 networks
pytestmark = pytest.mark.timeout(240)

# sitecustomize for the CLI subprocesses: an audit hook (PEP 578) that records every host-name
# lookup in the file named by PW_TEST_LOOKUP_LOG and refuses it. Address literals pass: the
# resolver turns them into a sockaddr without asking anyone.
LOOKUP_HOOK = '''
import ipaddress, os, sys

def _pw_lookup_hook(event, args):
    if event not in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                     "socket.gethostbyaddr"):
        return
    host = args[0]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None:
        return
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return
    except ValueError:
        pass
    with open(os.environ["PW_TEST_LOOKUP_LOG"], "a") as log:
        log.write(f"{event} {host}\\n")
    raise OSError(f"test: the lookup of {host!r} was refused")

sys.addaudithook(_pw_lookup_hook)
'''


@pytest.fixture
def cli(tmp_path):
    """Runs the CLI with the lookup recorder; `cli.lookups()` is what it asked."""
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(LOOKUP_HOOK)
    log = tmp_path / "lookups.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")])),
               PW_TEST_LOOKUP_LOG=str(log))

    class Cli:
        database = f"sqlite:///{tmp_path / 'scope.db'}"

        def run(self, *args, timeout=120):
            return subprocess.run(PACSWATCH + [*args, "--database", self.database], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, env=env, check=False)

        def popen(self, *args):
            return subprocess.Popen(PACSWATCH + [*args, "--database", self.database], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, env=env)

        def lookups(self) -> list[str]:
            return log.read_text().splitlines() if log.exists() else []

    return Cli()


class Tarpits:
    """One port on many loopback addresses: each accepted connection is recorded with its time
    (monotonic) and held open, so a probe waits out its deadline (a slow network)."""

    def __init__(self, ips: list[str]) -> None:
        self.socks, self.port = self._bind(ips)
        self.accepted: list[tuple[float, str]] = []
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _bind(ips: list[str]) -> tuple[list[socket.socket], int]:
        for _ in range(20):  # a port free on the first address may be taken on another: try again
            socks = []
            try:
                for ip in ips:
                    sock = socket.socket()
                    socks.append(sock)
                    sock.bind((ip, socks[0].getsockname()[1] if len(socks) > 1 else 0))
                    sock.listen(64)
                return socks, socks[0].getsockname()[1]
            except OSError:
                for sock in socks:
                    sock.close()
        raise RuntimeError("no port free on every address")

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self.socks:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.01):
                    conn, _ = key.fileobj.accept()
                    self.accepted.append((time.monotonic(), key.fileobj.getsockname()[0]))
                    self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks + self._held:
            sock.close()


@pytest.fixture
def tarpits():
    made = []

    def make(ips):
        made.append(Tarpits(ips))
        return made[-1]

    yield make
    for item in made:
        item.close()


# --- one address, every spelling ------------------------------------------------------------


def test_an_exclude_entry_written_mapped_blocks_the_ipv4_address_and_the_reverse(tmp_path):
    excluded = tmp_path / "exclude.txt"
    excluded.write_text("::ffff:127.0.0.9\n127.0.0.20\n::ffff:127.1.0.0/112\n")
    blocklist = Blocklist.default().with_entries(load_exclude_file(excluded))
    for ip in ("127.0.0.9", "::ffff:127.0.0.9", "127.0.0.20", "::ffff:127.0.0.20", "127.1.0.7", "::ffff:127.1.0.7"):
        assert blocklist.reason_for(ip) is not None, ip
    assert blocklist.reason_for("127.0.0.10") is None
    # An IPv6 entry wider than ::ffff:0:0/96 covers the IPv4 addresses its mapped part spells.
    assert Blocklist(Blocklist.default().entries).with_file(_write(tmp_path, "::/64\n")).reason_for("127.0.0.10")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "entries.txt"
    path.write_text(text)
    return path


def test_an_optout_stored_mapped_or_written_mapped_blocks_the_ipv4_address():
    assert normalize_network("::ffff:127.0.0.9") == "127.0.0.9"
    assert normalize_network("::ffff:127.0.0.0/120") == "127.0.0.0/24"
    assert normalize_network("127.0.0.1-9") == "127.0.0.1-127.0.0.9"
    # A row written by an older pacswatch, which stored the text as typed.
    rows = [{"id": 1, "cidr": "::ffff:127.0.0.9", "requested_at": "2026-11-01T00:00:00"}]
    blocklist = campaign_blocklist(rows)
    assert "opt-out list" in blocklist.reason_for("127.0.0.9")
    assert "opt-out list" in blocklist.reason_for("::ffff:127.0.0.9")
    assert optout_entries(rows)[0].span[0] == 4


def test_scopes_match_either_spelling_and_an_ipv6_scope_does_not_widen_to_ipv4():
    mapped = Scope.from_specs(["::ffff:10.0.0.0/104"])
    assert mapped.reason_for("10.1.2.3") is None and mapped.reason_for("::ffff:10.1.2.3") is None
    assert Scope.from_specs(["10.0.0.0/8"]).reason_for("::ffff:10.1.2.3") is None
    assert "outside" in Scope.from_specs(["::/64"]).reason_for("10.1.2.3")
    scope = campaign_scope(None, [{"cidr": "::ffff:127.5.0.0/112"}])
    assert scope.reason_for("127.5.0.1") is None and "database" in scope.reason_for("127.6.0.1")


# --- the check for one address, and a running scan's ------------------------------------------


def test_scope_reason_answers_from_the_database_now(repo):
    assert scope_reason(repo, "127.0.0.9") is None
    assert "documentation" in scope_reason(repo, "192.0.2.1")  # the default blocklist
    entry = repo.add_optout(normalize_network("::ffff:127.0.0.9"), "owner@example.org")
    assert f"entry {entry}" in scope_reason(repo, "127.0.0.9")
    assert scope_reason(repo, "::ffff:127.0.0.9") is not None
    repo.add_scope("127.7.0.0/16")
    assert "outside the scope in the database" in scope_reason(repo, "127.0.0.10")
    assert scope_reason(repo, "127.7.1.1") is None


def test_a_running_scans_blocklist_follows_the_optout_list(database_url):
    with Repository.open(database_url) as scan_repo, Repository.open(database_url) as other:
        live = LiveBlocklist(scan_repo)
        assert live.reason_for_key(4, 0x7F00_0009) is None
        other.add_optout("127.0.0.0/28", "owner@example.org")  # another process, as `optout add`
        if scan_repo.backend == "sqlite":  # a change counter: seen at the very next endpoint
            assert "opt-out" in live.reason_for_key(4, 0x7F00_0009)
        else:  # PostgreSQL: read again every POLL_SECONDS
            deadline = time.monotonic() + POLL_SECONDS + 0.5
            while live.reason_for_key(4, 0x7F00_0009) is None:
                assert time.monotonic() < deadline, "the opt-out was not seen within POLL_SECONDS"
                time.sleep(0.05)
        assert live.reason_for("127.0.0.16") is None
        (row,) = other.optouts()
        other.remove_optout(row["id"])
        deadline = time.monotonic() + POLL_SECONDS + 0.5
        while live.reason_for("127.0.0.9") is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_an_optout_added_during_a_scan_is_never_contacted_after_the_add(cli, tarpits):
    net = f"127.61.{SECOND}"
    pits = tarpits([f"{net}.{i}" for i in range(256)])
    out = Path(cli.database[len("sqlite:///"):]).with_name("out.jsonl")
    # About four endpoints a second: each probe waits out its association deadline (1 s).
    proc = cli.popen("scan", f"{net}.0/24", "--ports", str(pits.port), "--seed", "11", "--concurrency", "4",
                     "--timeout", "0.5", "--no-progress", "--no-attribute", "-o", str(out))
    try:
        deadline = time.monotonic() + 60
        while len(pits.accepted) < 8:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the scan did not start"
            time.sleep(0.05)
        added = cli.run("optout", "add", f"{net}.128/25", "--contact", "owner@example.org")
        assert added.returncode == 0, added.stderr
        after_add = time.monotonic()
        before = len(pits.accepted)
        time.sleep(4)  # about sixteen more endpoints, half of them in the opted-out half
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert len(pits.accepted) > before + 4, "the scan did not go on after the opt-out"
    # No opted-out address is contacted after the add, but for the endpoints in flight at that
    # moment (at most --concurrency), which finish: a DICOM probe may connect twice (a TLS try
    # after the plain association times out). The margin is our accept thread's delay (it polls
    # every 10 ms), not a window the scan is allowed.
    opted_out = {f"{net}.{i}" for i in range(128, 256)}
    first_contact: dict[str, float] = {}
    for t, ip in pits.accepted:
        first_contact.setdefault(ip, t)
    late = sorted((round(t - after_add, 3), ip) for ip, t in first_contact.items()
                  if ip in opted_out and t > after_add + 0.1)
    assert late == []
    in_flight = {ip for t, ip in pits.accepted if ip in opted_out and t > after_add + 0.1}
    assert len(in_flight) <= 4
    # ... and the scan did reach opted-out addresses after the add: it reported them blocked.
    blocked = [json.loads(line) for line in out.read_text().splitlines() if '"blocked"' in line]
    assert blocked and all("opt-out list" in r["detail"] and r["ip"] in opted_out for r in blocked)
    assert cli.lookups() == []


# --- probe and imports pass the same check ------------------------------------------------------


def test_probe_honours_the_databases_scope_and_a_mapped_optout(cli, tarpits):
    inside, outside = f"127.62.{SECOND}.5", f"127.63.{SECOND}.5"
    pits = tarpits([inside, outside])
    assert cli.run("scope", "add", f"127.62.{SECOND}.0/24").returncode == 0
    refused = cli.run("probe", f"{outside}:{pits.port}", "--timeout", "0.5")
    assert refused.returncode == 2 and "outside the scope in the database" in refused.stderr, refused.stderr

    assert cli.run("optout", "add", f"::ffff:{inside}", "--contact", "owner@example.org").returncode == 0
    for spelled in (f"{inside}:{pits.port}", f"[::ffff:{inside}]:{pits.port}"):
        refused = cli.run("probe", spelled, "--timeout", "0.5")
        assert refused.returncode == 2 and "opt-out list" in refused.stderr, refused.stderr
    time.sleep(0.1)
    assert pits.accepted == []
    # The check is not a blanket refusal: in scope and not opted out, the probe runs.
    other = f"127.62.{SECOND}.6"
    more = tarpits([other])
    assert cli.run("probe", f"{other}:{more.port}", "--timeout", "0.3").returncode == 0
    assert [ip for _, ip in more.accepted] and cli.lookups() == []


@pytest.mark.parametrize("ports", [
    '"104"', "null", '{"port": 104}', '[104]', '[{"status": "open", "proto": "tcp"}]',
    '[{"port": -1, "status": "open", "proto": "tcp"}]', '[{"port": 70000, "status": "open", "proto": "tcp"}]',
    '[{"port": "104", "status": "open", "proto": "tcp"}]', '[{"port": null, "status": "open", "proto": "tcp"}]',
    '[{"port": true, "status": "open", "proto": "tcp"}]',
])
def test_masscan_entries_with_odd_ports_are_named(tmp_path, ports):
    path = tmp_path / "masscan.json"
    path.write_text(f'[{{"ip": "127.0.0.1", "ports": [{{"port": 104, "status": "open", "proto": "tcp"}}]}},\n'
                    f'{{"ip": "127.0.0.2", "ports": {ports}}}]')
    if ports == "null":  # masscan's own shape for an address without ports: nothing to probe
        assert [str(e.ip) for e in read_masscan_json(path)] == ["127.0.0.1"]
        return
    with pytest.raises(TargetError) as info:
        read_masscan_json(path)
    (problem,) = info.value.problems
    assert problem.source == f"{path} entry 2" and "127.0.0.2" in problem.text


def test_masscan_json_nested_too_deeply_is_a_bad_line_not_a_crash(tmp_path):
    path = tmp_path / "masscan.json"
    path.write_text('{"ip": "127.0.0.1", "ports": [{"port": 104, "status": "open"}]}\n' + "[" * 100_000 + "\n")
    with pytest.raises(TargetError) as info:
        read_masscan_json(path)
    (problem,) = info.value.problems
    assert problem.line == 2 and "nested too deeply" in problem.reason


@pytest.mark.parametrize("line,reason", [
    ('"' + "x" * 200_000 + '",104', "field larger than field limit"),  # over the csv module's limit
    ('"127.0.0.2,104', "not a CSV line"),                              # an unclosed quote
    ("127.0.0.2", "fewer fields than the header names"),
])
def test_zmap_csv_lines_that_break_the_csv_reader_are_named(tmp_path, line, reason):
    path = tmp_path / "zmap.csv"
    path.write_text(f"saddr,sport\n127.0.0.1,104\n{line}\n127.0.0.3,104\n")
    with pytest.raises(TargetError) as info:
        read_zmap_csv(path)
    (problem,) = info.value.problems  # the next line is not swallowed by the bad one
    assert problem.line == 3 and reason in problem.reason


def test_a_bad_masscan_file_scans_nothing(cli, tarpits, tmp_path):
    pits = tarpits([f"127.64.{SECOND}.1"])
    path = tmp_path / "masscan.json"
    path.write_text(f'[{{"ip": "127.64.{SECOND}.1", "ports": [{{"port": {pits.port}, "status": "open"}}]}},\n'
                    '{"ip": "127.64.0.2", "ports": "104"}]')
    result = cli.run("scan", "--import-masscan", str(path), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "entry 2" in result.stderr and "'ports'" in result.stderr and "Traceback" not in result.stderr
    time.sleep(0.1)
    assert pits.accepted == []
    with Repository.open(cli.database) as repo:
        assert repo.scans() == []


# --- input refused before any lookup ----------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["scan", "127.44.0.1O", "--ports", "104", "--no-progress"],
    ["history", "127.42.0.1O"],
    ["probe", "127.44.0.1O:104"],
    ["scan", "pacs.example.org", "--no-resolve", "--ports", "104", "--no-progress"],
    ["probe", "pacs.example.org:104", "--no-resolve"],
    ["history", "pacs.example.org", "--no-resolve"],
    ["scan", "pacs", "--ports", "104", "--no-progress"],
])
def test_mistyped_addresses_and_forbidden_names_are_refused_without_a_lookup(cli, args):
    result = cli.run(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert ("'O' at position 11" in result.stderr or "--no-resolve" in result.stderr
            or "no dot" in result.stderr), result.stderr
    assert cli.lookups() == []


def test_the_lookup_recorder_sees_a_lookup(cli):
    # The recorder itself: a name the CLI may resolve is recorded (and refused), so an empty
    # record above means no lookup, not a recorder that saw nothing.
    result = cli.run("history", "pacs.example.org")
    assert result.returncode == 2
    assert cli.lookups() == ["socket.getaddrinfo pacs.example.org"]


# --- the last word, right before each connect -------------------------------------------------


@pytest.mark.parametrize("web", [False, True], ids=["dicom", "web"])
def test_an_address_refused_at_connect_time_is_never_contacted(tarpits, web):
    """The scan's live opt-out list is asked again by the rate limiter after each token, right
    before the connect: a probe taken before an opt-out (in flight, or waiting for its token)
    does not connect after it. A canary records every connection; the control run connects."""
    import asyncio

    from pacswatch.net.limits import RateLimiter
    from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions
    from pacswatch.probes.registry import ProbeSelector

    canary = tarpits(["127.0.0.93"])
    endpoint = Endpoint("127.0.0.93", canary.port)
    selector = ProbeSelector.for_web_ports(str(canary.port) if web else None)
    from pacswatch.probes.base import Timeouts

    options = ProbeOptions(timeouts=Timeouts.scaled(0.5))  # the control waits out the tarpit

    async def probe(refuse):
        ctx = ProbeContext(options, RateLimiter(0, refuse=refuse))
        return await probe_endpoint(selector.probe_for(endpoint.port), ctx, endpoint)

    refused = asyncio.run(probe(lambda ip: "on the opt-out list (entry 7)" if ip == "127.0.0.93" else None))
    assert refused.status == "blocked", refused
    assert "opt-out list (entry 7)" in (refused.detail or "")
    assert canary.accepted == []
    asyncio.run(asyncio.wait_for(probe(lambda ip: None), 30))  # control: the same probe connects
    assert canary.accepted, "the control probe should have connected"
