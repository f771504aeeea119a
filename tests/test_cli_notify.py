"""The owner and notification commands end to end (cli/notify.py's parsers and handlers) on a
database filled by a real scan of the lab, with DNS, RDAP and SMTP servers on loopback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for extra in (_TESTS, _TESTS / "attribution", _TESTS / "notify"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import fakedata  # noqa: E402
from lab_scan import scan_and_store  # noqa: E402
from loopback_servers import DnsServer, RdapServer, loopback_only, rdap_network, violations  # noqa: E402
from smtp_servers import SmtpServer  # noqa: E402

from pacswatch.cli.notify import register  # noqa: E402
from pacswatch.lab import Lab  # noqa: E402
from pacswatch.store.repository import Repository  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pacswatch")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-notify")
    with loopback_only():
        lab = Lab(f"127.63.{os.getpid() % 200}.0", port=0, names=["open-archive"]).__enter__()
        dns, rdap, smtp = DnsServer().start(), RdapServer().start(), SmtpServer().start()
        rdap.networks["127.0.0.0/8"] = rdap_network("127.0.0.0/8", "LOOP", handle="NET-LOOP", org="Loop ISP",
                                                    abuse="abuse@isp.example.net")
        db = str(tmp / "pacswatch.db")
        with Repository.open(db) as repo:
            scan_and_store(repo, [e.address for e in lab.manifest])
        config = tmp / "notify.toml"
        config.write_text(f"""
[attribution]
resolver = ["{dns.nameserver}"]
rdap_bootstrap = "{rdap.bootstrap_url}"
rdap_min_interval = 0

[sender]
organisation = "Example CERT"
from = "notify@example.org"

[smtp]
enabled = true
host = "127.0.0.1"
port = {smtp.controller.port}
security = "none"
helo = "pacswatch.test"
""")
        yield dict(db=db, config=str(config), lab=lab, smtp=smtp, tmp=tmp)
        for server in (dns, rdap, smtp):
            server.stop()
        lab.stop()


def run(setup, capsys, *argv: str, config: bool = True) -> tuple[int, str, str]:
    args = parser().parse_args([*argv[:1], *argv[1:], "--database", setup["db"],
                                *(["--config", setup["config"]] if config else [])])
    with loopback_only():
        code = args.handler(args)
    out, err = capsys.readouterr()
    setup.setdefault("outputs", []).extend([out, err])
    return code, out, err


def test_the_commands_in_order(setup, capsys, monkeypatch):
    monkeypatch.delenv("PACSWATCH_NOTIFY_CONFIG", raising=False)
    ip = setup["lab"].manifest[0].ip
    code, _, err = run(setup, capsys, "owners", "add", "not a cidr", "--name", "X", "--contact", "nope")
    assert code == 2 and "neither a CIDR" in err
    code, out, _ = run(setup, capsys, "owners", "add", "192.0.2.0/24", "--name", "Doc Net", "--contact",
                       "noc@example.org")
    assert code == 0 and "owner 1 added" in out
    code, out, _ = run(setup, capsys, "owners", "add", f"{ip.rsplit('.', 1)[0]}.0/24", "--name", "Lab Hospital",
                       "--contact", "it@lab-hospital.example.org", "--language", "en")
    assert code == 0
    code, out, _ = run(setup, capsys, "owners", "list")
    assert "Doc Net" in out and "Lab Hospital" in out
    assert run(setup, capsys, "owners", "remove", "1")[0] == 0
    assert run(setup, capsys, "owners", "remove", "1")[0] == 1

    code, out, _ = run(setup, capsys, "attribute", "--json")
    assert code == 0
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert line["ip"] == ip and line["contact"]["address"] == "it@lab-hospital.example.org"
    assert line["escalation"]["address"] == "abuse@isp.example.net"
    assert all({"source", "at"} <= set(f) for f in line["facts"])

    code, out, _ = run(setup, capsys, "cases")  # attribution opened the owner's case (state new)
    assert code == 0 and "Lab Hospital" in out and "new" in out
    # sending needs a configuration that enables it: without one, nothing is sent
    code, _, err = run(setup, capsys, "notify", config=False)
    assert code == 2 and "sending is disabled" in err and setup["smtp"].received == []
    out_dir = setup["tmp"] / "review"
    code, out, _ = run(setup, capsys, "notify", "--dry-run", "--out", str(out_dir))
    assert code == 0 and "1 message(s) written, nothing sent" in out and len(list(out_dir.glob("*.eml"))) == 1
    code, out, _ = run(setup, capsys, "cases", "--state", "new")
    assert "Lab Hospital" in out

    code, out, _ = run(setup, capsys, "notify")
    assert code == 0 and "sent 1" in out
    assert [r.rcpt_tos for r in setup["smtp"].received] == [["it@lab-hospital.example.org"]]
    code, out, _ = run(setup, capsys, "notify")
    assert "sent 0" in out and len(setup["smtp"].received) == 1

    code, out, _ = run(setup, capsys, "case", "1")
    assert code == 0 and "notified" in out and "new -> notified" in out and f"{ip}:" in out
    code, out, _ = run(setup, capsys, "case", "1", "--ack", "firewall change scheduled")
    assert "notified -> acknowledged: owner acknowledged: firewall change scheduled" in out
    assert run(setup, capsys, "case", "99")[0] == 1

    code, out, _ = run(setup, capsys, "export", "intelmq")
    events = [json.loads(x) for x in out.splitlines()]
    assert events and events[0]["source.ip"] == ip
    assert events[0]["source.abuse_contact"] == "it@lab-hospital.example.org"
    assert events[0]["extra.studies"] == 12 and events[0]["protocol.application"] == "dicom"
    code, out, _ = run(setup, capsys, "export", "csv", "--output", str(setup["tmp"] / "csv"))
    (path,) = [Path(x) for x in out.split()]
    assert path.read_text().startswith("owner,contact,ip,port")

    planted = [p.lower() for p in setup["lab"].planted_strings() if len(p) >= 6]
    everything = "\n".join(setup["outputs"]) + path.read_text()
    for eml in out_dir.glob("*.eml"):  # decoded: the CSV attachment is base64 on disk
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        everything += "".join(part.get_content() for part in message.walk() if part.get_content_maintype() == "text")
    assert fakedata.find_markers(everything) == []
    assert [p for p in planted if p in everything.lower()] == []
    assert violations() == []


def test_csv_export_with_nothing_exposed_is_a_header_on_stdout(tmp_path, capsys):
    from pacswatch.cli import main

    assert main(["export", "csv", "--database", str(tmp_path / "empty.db")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("owner,contact,ip,port,") and out.count("\r\n") == 1, out  # the header only
    assert main(["export", "csv", "--output", str(tmp_path / "csv"), "--database", str(tmp_path / "empty.db")]) == 0
    assert "no exposed services: no file written" in capsys.readouterr().err
