"""Opt-outs honoured at notify time (issue 12, item 1), on a database filled by real scans of the
lab, with a real SMTP server on loopback, on SQLite and PostgreSQL.

An opt-out stops every notice that would name one of its addresses and every message to the
contact who asked, whatever network it is about; its findings close as `opted-out` (history
kept); `cases`, `case` and `stats` show it; and an opt-out added after a message was queued still
stops that message when it is sent."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import violations

from pacswatch.attribution.local import LocalOwner
from pacswatch.campaign.scope import contact_check
from pacswatch.cli import main
from pacswatch.lab import Lab
from pacswatch.notify import cases as C
from pacswatch.notify.config import load
from pacswatch.notify.delivery import deliver
from pacswatch.notify.optout import OptOuts
from pacswatch.notify.service import attribute, findings_exposures, notify
from pacswatch.notify.smtp import SmtpTransport
from pacswatch.notify.store import NotifyStore
from pacswatch.notify.workflow import plan_pass
from pacswatch.store.repository import Repository

pytestmark = pytest.mark.slow
NET = os.getpid() % 200  # third octet: tests of other processes use other lab networks


def message_text(raw: bytes) -> str:
    """Everything a recipient reads: headers, body and the decoded CSV attachment."""
    email = message_from_bytes(raw, policy=policy.default)
    parts = [str(email["Subject"]), str(email["To"])]
    parts += [p.get_content() for p in email.walk() if p.get_content_maintype() == "text"]
    return "\n".join(parts)


def csv_ips(raw: bytes) -> list[str]:
    email = message_from_bytes(raw, policy=policy.default)
    (attachment,) = [p for p in email.walk() if p.get_content_type() == "text/csv"]
    return [line.split(",")[0] for line in attachment.get_content().splitlines()[1:]]


def write_config(path, smtp) -> str:
    path.write_text(f"""
[sender]
organisation = "Example CERT"
from = "notify@example.org"

[smtp]
enabled = true
host = "127.0.0.1"
port = {smtp.port}
security = "none"
helo = "pacswatch.test"
timeout = 5
""")
    return str(path)


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def labs():
    a = Lab(f"127.71.{NET}.0", port=0, names=["open-archive", "echo-only"]).__enter__()
    c = Lab(f"127.72.{NET}.0", port=0, names=["open-archive"]).__enter__()
    yield a, c
    c.stop()
    a.stop()


def test_an_optout_stops_every_notice_naming_it_or_going_to_its_contact(labs, database_url, smtp_server, tmp_path,
                                                                         capsys):
    lab_a, lab_c = labs
    archive, echo = lab_a.endpoint("open-archive"), lab_a.endpoint("echo-only")
    db, config = database_url, write_config(tmp_path / "notify.toml", smtp_server)
    # Owner A runs the open archive; owner B (another network) shares A's SOC as its contact;
    # owner C is a control that must still be told.
    for match, name, contact in ((f"{archive.ip}/32", "Hospital A", "soc@a.example.org"),
                                 (f"{echo.ip}/32", "Clinic B", "SOC@A.example.org"),
                                 (f"127.72.{NET}.0/24", "Hospital C", "it@c.example.org")):
        assert cli(capsys, "owners", "add", match, "--name", name, "--contact", contact, "--database", db)[0] == 0
    with Repository.open(db) as repo:
        scan_and_store(repo, lab_endpoints(lab_a.manifest) + lab_endpoints(lab_c.manifest))
        attribute(repo.engine, load(config), may_contact=contact_check(repo))
        store = NotifyStore(repo.engine)
        assert sorted((c.owner_name, c.state) for c in store.cases()) == [
            ("Clinic B", C.NEW), ("Hospital A", C.NEW), ("Hospital C", C.NEW)]

    code, out = cli(capsys, "optout", "add", f"{archive.ip}/32", "--contact", "Security Team <soc@a.example.org>",
                    "--database", db)
    assert code == 0 and "1 finding(s) closed as opted-out" in out

    code, out = cli(capsys, "notify", "--database", db, "--config", config)
    assert code == 0, out
    # One notice, to C; none to the opted-out contact (nor to B, which has the same contact),
    # and none names the opted-out address.
    assert [r.rcpt_tos for r in smtp_server.received] == [["it@c.example.org"]]
    assert all(archive.ip not in message_text(r.content) for r in smtp_server.received)
    assert "no notice: soc@a.example.org asked not to be contacted (opt-out entry 1)" in out

    with Repository.open(db) as repo:
        store = NotifyStore(repo.engine)
        by_owner = {c.owner_name: c for c in store.cases()}
        (finding,) = repo.findings(statuses=["opted-out"])
        assert (finding["ip"], finding["port"]) == archive.address
        assert [e["kind"] for e in repo.events(finding_ids=[finding["id"]])] == ["new", "opted-out"]
        # A's only service is opted out: its case closes, and says why. B's waits for a contact.
        assert by_owner["Hospital A"].state == C.CLOSED and by_owner["Clinic B"].state == C.NEW
        history = store.history(by_owner["Hospital A"].id)
        assert any(e["kind"] == "note" and "finding closed as opted-out" in e["why"] for e in history)
        assert history[-1]["to_state"] == C.CLOSED and history[-1]["why"].startswith("opted-out:")
        assert store.messages(case_id=by_owner["Clinic B"].id) == []
        case_a = by_owner["Hospital A"].id

    code, out = cli(capsys, "cases", "--json", "--database", db)
    opted = {row["owner_name"]: row["opted_out"] for row in map(json.loads, out.splitlines())}
    assert opted == {"Hospital A": [list(archive.address)], "Clinic B": [], "Hospital C": []}
    code, out = cli(capsys, "cases", "--database", db)
    assert code == 0 and "opted out" in out.lower().replace("-", " ")  # the table has the column
    code, out = cli(capsys, "case", str(case_a), "--database", db)
    assert f"{archive.ip}:{archive.port} (opted out)" in out
    code, out = cli(capsys, "stats", "--format", "json", "--database", db)
    assert json.loads(out)["findings_by_status"]["opted-out"] == 1

    # Weeks later, after a rescan of C: C is reminded; still nothing to the opted-out contact or
    # about its address.
    with Repository.open(db) as repo:
        scan_and_store(repo, lab_endpoints(lab_c.manifest), shift=timedelta(days=14))
        later = notify(repo.engine, load(config), dry_run=False,
                       clock=lambda: datetime.now(UTC) + timedelta(days=15))
        assert len(later.delivery.sent) == 1
    assert [r.rcpt_tos for r in smtp_server.received] == [["it@c.example.org"], ["it@c.example.org"]]
    assert all(archive.ip not in message_text(r.content) for r in smtp_server.received)
    assert violations() == []


def test_an_optout_added_after_queueing_stops_the_send(database_url, smtp_server, tmp_path):
    with Lab(f"127.73.{NET}.0", port=0, names=["open-archive", "echo-only"]) as lab:
        archive, echo = lab.endpoint("open-archive"), lab.endpoint("echo-only")
        config = load(write_config(tmp_path / "notify.toml", smtp_server))
        transport = SmtpTransport(config.smtp, envelope_from="notify@example.org")
        with Repository.open(database_url) as repo:
            store = NotifyStore(repo.engine)
            store.add_owner(LocalOwner(f"127.73.{NET}.0/24", "Hospital D", ("it@d.example.org",)),
                            datetime.now(UTC))
            scan_and_store(repo, lab_endpoints(lab.manifest))
            attribute(repo.engine, config, may_contact=contact_check(repo))

            # Queued naming both services; then the owner of one opts out (another person asks).
            now = datetime.now(UTC)
            plan = plan_pass(store, findings_exposures(repo.engine), now=now, settings=config.settings)
            (queued,) = store.messages(states=["pending"])
            assert plan.queued == [queued.key] and sorted(csv_ips(queued.raw)) == sorted([archive.ip, echo.ip])
            repo.add_optout(f"{archive.ip}", "noc@d.example.org")

            report = deliver(store, transport, clock=lambda: datetime.now(UTC))
            assert smtp_server.received == [] and report.sent == []
            assert [key for key, _ in store.cancelled] == [queued.key] and store.messages() == []
            (case,) = store.cases()
            assert case.state == C.NEW  # nothing went out: the owner has not been told yet
            assert any(f"cancelled, not sent: it names {archive.ip}, on the opt-out list" in e["why"]
                       for e in store.history(case.id))

            # The next pass tells the owner about the service that is not opted out, and only that.
            result = notify(repo.engine, config, dry_run=False)
            assert len(result.delivery.sent) == 1
            (received,) = smtp_server.received
            assert received.rcpt_tos == ["it@d.example.org"] and csv_ips(received.content) == [echo.ip]
            assert archive.ip not in message_text(received.content)
            assert store.case(case.id).state == C.NOTIFIED

            # After a rescan (of the service not opted out), a reminder queued, then the recipient
            # asks (about another network): it is not sent.
            scan_and_store(repo, [echo.address], shift=timedelta(days=14))
            later = now + timedelta(days=15)
            plan = plan_pass(store, findings_exposures(repo.engine), now=later, settings=config.settings)
            assert len(plan.queued) == 1
            repo.add_optout("198.51.100.0/24", "IT@d.example.org")
            report = deliver(store, transport, clock=lambda: later)
            assert report.sent == [] and len(smtp_server.received) == 1
            why = "it@d.example.org asked not to be contacted (opt-out entry 2)"
            assert store.cancelled[-1] == (plan.queued[0], why)
    assert violations() == []


def test_a_dry_run_writes_no_message_an_optout_forbids(database_url, smtp_server, tmp_path):
    """The outbox as rendered for review (--dry-run) leaves out a queued message an opt-out now
    forbids, and shows the one the real pass would queue in its place."""
    with Lab(f"127.74.{NET}.0", port=0, names=["open-archive", "echo-only"]) as lab:
        archive, echo = lab.endpoint("open-archive"), lab.endpoint("echo-only")
        config = load(write_config(tmp_path / "notify.toml", smtp_server))
        with Repository.open(database_url) as repo:
            store = NotifyStore(repo.engine)
            store.add_owner(LocalOwner(f"127.74.{NET}.0/24", "Hospital E", ("it@e.example.org",)),
                            datetime.now(UTC))
            scan_and_store(repo, lab_endpoints(lab.manifest))
            attribute(repo.engine, config, may_contact=contact_check(repo))
            plan_pass(store, findings_exposures(repo.engine), now=datetime.now(UTC),
                      settings=config.settings)
            (queued,) = store.messages(states=["pending"])
            repo.add_optout(f"{archive.ip}", "noc@e.example.org")

            dry = notify(repo.engine, config, dry_run=True, out_dir=str(tmp_path / "review"))
            assert [key for key, _ in dry.plan.cancelled] == [queued.key]
            (written,) = dry.written
            assert csv_ips(written.read_bytes()) == [echo.ip]
            assert store.messages(states=["pending"]) == [queued]  # a dry run changes no message
    assert smtp_server.received == [] and violations() == []


def test_optout_addresses_and_contacts_compare_normalised():
    """An opt-out written as an IPv4-mapped IPv6 address covers the IPv4 address and the other way
    round; a contact matches whatever its case or display name."""
    listed = OptOuts.from_rows([
        {"id": 1, "cidr": "::ffff:192.0.2.9", "contact": "ticket 4711"},
        {"id": 2, "cidr": "198.51.100.0/24", "contact": "Example SOC <Soc@Example.org>"},
    ])
    assert listed.address_reason("192.0.2.9") == "opt-out entry 1 (::ffff:192.0.2.9)"
    assert "opt-out entry 2" in listed.address_reason("::ffff:198.51.100.7")
    assert listed.address_reason("192.0.2.10") is None and listed.address_reason("203.0.113.9") is None
    assert listed.recipient_reason("soc@example.ORG") == "soc@example.org asked not to be contacted (opt-out entry 2)"
    assert listed.recipient_reason("Someone <soc@example.org>") is not None
    assert listed.recipient_reason("it@example.org") is None and listed.recipient_reason("ticket 4711") is None
    assert listed.veto("it@example.org", ["203.0.113.5", "192.0.2.9"]) == (
        "it names 192.0.2.9, on the opt-out list (opt-out entry 1 (::ffff:192.0.2.9))")
