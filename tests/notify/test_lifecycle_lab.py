"""The whole path over rescans of the lab: scan, store, attribute (local table, DNS, RDAP,
security.txt on loopback), notify through a real SMTP server, rescan. One owner closes their
server (notified -> fixed); the other does not (follow-up, escalation to the network's abuse
desk, then stale). Every message, dry-run file and export is searched for patient data."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest

import fakedata
from pacswatch.attribution.attributor import AttributionConfig
from pacswatch.attribution.dns import ResolverConfig
from pacswatch.attribution.local import LocalOwner
from pacswatch.attribution.rdap import RdapConfig
from pacswatch.campaign.scope import contact_check
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.lab import Lab
from pacswatch.lab.web import start_web_lab
from pacswatch.notify import cases as C
from pacswatch.notify.config import Config
from pacswatch.notify.exports import intelmq_lines, per_owner_csv
from pacswatch.notify.render import Sender
from pacswatch.notify.service import attribute, findings_exposures, notify
from pacswatch.notify.smtp import SmtpConfig
from pacswatch.notify.store import NotifyStore
from pacswatch.notify.workflow import Settings
from pacswatch.store.repository import Repository

from lab_scan import lab_endpoints, scan_and_store
from loopback_servers import DnsServer, RdapServer, SecurityTxtServer, rdap_network, violations

pytestmark = pytest.mark.slow
SECURITY_TXT = "Contact: mailto:security@hospital-b.example.org\nExpires: 2099-01-01T00:00:00Z\n"


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def texts_of(raw: bytes) -> list[str]:
    """Every decoded text part of a message (the CSV is base64 on the wire), and the raw bytes."""
    email = message_from_bytes(raw, policy=policy.default)
    out = [raw.decode("utf-8", "replace"), str(email["Subject"])]
    for part in email.walk():
        if not part.is_multipart():
            out.append(part.get_content() if part.get_content_maintype() == "text" else "")
    return out


def assert_no_patient_data(texts: list[str], planted: list[str]) -> None:
    for text in texts:
        assert fakedata.find_markers(text) == [], fakedata.find_markers(text)
        lower = text.lower()
        leaked = [p for p in planted if len(p) >= 6 and p.lower() in lower]
        assert leaked == [], leaked


@pytest.fixture
def world(tmp_path, smtp_server):
    pid = os.getpid() % 200
    lab_a = Lab(f"127.61.{pid}.0", port=0, names=["open-archive"]).__enter__()
    lab_b = Lab(f"127.62.{pid}.0", port=0, names=["open-archive", "echo-only"]).__enter__()
    web_b = start_web_lab(f"127.62.{pid}.40", f"127.62.{pid}.41", kinds=("orthanc-open",))
    dns, rdap, web = DnsServer().start(), RdapServer().start(), SecurityTxtServer().start()
    ip_b = lab_b.endpoint("open-archive").ip
    for ip in {e.ip for e in lab_b.manifest} | {web_b.endpoints[0].ip}:
        dns.add_ptr(ip, f"pacs-{ip.rsplit('.', 1)[1]}.radiology.hospital-b.example.org")
        dns.add_a(f"pacs-{ip.rsplit('.', 1)[1]}.radiology.hospital-b.example.org", ip)
    dns.add_a("hospital-b.example.org", web.host)
    web.files["hospital-b.example.org"] = SECURITY_TXT
    rdap.networks["127.0.0.0/8"] = rdap_network("127.0.0.0/8", "LOOPBACK-ISP", handle="NET-127", org="Example ISP",
                                                abuse="abuse@isp.example.net")
    config = Config(
        attribution=AttributionConfig(resolver=ResolverConfig((dns.nameserver,), timeout=1.0),
                                      rdap=RdapConfig(bootstrap_url=rdap.bootstrap_url, min_interval=0.0),
                                      security_txt_scheme="http", security_txt_port=web.port),
        settings=Settings(policy=C.Policy.days(followup=14, max_followups=1, escalate=14, stale=30),
                          sender=Sender(organisation="Example CERT", from_addr="notify@example.org")),
        smtp=SmtpConfig(enabled=True, host="127.0.0.1", port=smtp_server.port, security="none", helo="pacswatch.test",
                        timeout=5.0))
    repo = Repository.open(str(tmp_path / "pacswatch.db"))
    NotifyStore(repo.engine).add_owner(LocalOwner(f"127.61.{pid}.0/24", "Hospital A", ("it-a@example.org",),
                                                  "en"), datetime.now(timezone.utc))
    yield dict(lab_a=lab_a, lab_b=lab_b, web_b=web_b, repo=repo, config=config, smtp=smtp_server, ip_b=ip_b,
               planted=lab_a.planted_strings(), tmp=tmp_path)
    repo.close()
    for server in (dns, rdap, web):
        server.stop()
    web_b.stop()
    lab_b.stop()
    lab_a.stop()


def test_notified_fixed_followup_escalation_stale(world):
    repo, config, smtp, lab_a, lab_b = world["repo"], world["config"], world["smtp"], world["lab_a"], world["lab_b"]
    web_ports = frozenset(e.port for e in world["web_b"].endpoints)
    targets = lab_endpoints(lab_a.manifest) + lab_endpoints(lab_b.manifest) + lab_endpoints(world["web_b"].endpoints)
    records = scan_and_store(repo, targets, web_ports=web_ports)
    assert {r.severity for r in records if r.ip == lab_a.manifest[0].ip} == {"critical"}
    engine, store, clock = repo.engine, NotifyStore(repo.engine), Clock()

    results = attribute(engine, config, may_contact=contact_check(repo), clock=clock)
    a_ip = lab_a.manifest[0].ip
    assert results[a_ip][0].contact.address == "it-a@example.org"
    b = results[world["ip_b"]][0]
    assert (b.contact.address, b.escalation.address) == ("security@hospital-b.example.org", "abuse@isp.example.net")

    # A dry run first: messages on disk, nothing sent, no notice state changed.
    dry = notify(engine, config, dry_run=True, out_dir=str(world["tmp"] / "review"), clock=clock)
    assert len(dry.written) == 2 and smtp.received == [] and store.messages() == []
    assert {c.state for c in store.cases()} == {C.NEW}

    first = notify(engine, config, dry_run=False, clock=clock)
    assert len(first.delivery.sent) == 2
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["it-a@example.org", "security@hospital-b.example.org"]
    case_a, case_b = sorted(store.cases(), key=lambda c: c.owner_name != "Hospital A")
    assert (case_a.state, case_b.state) == (C.NOTIFIED, C.NOTIFIED)
    assert len(store.services_of(case_b.id)) == 3  # two DICOM endpoints and the Orthanc web API
    b_mail = next(r for r in smtp.received if r.rcpt_tos[0].startswith("security@")).message
    assert "DicomAlwaysAllowFind" in b_mail.get_body(("plain",)).get_content()

    # Owner A closes the server; two rescans see it refused: A is fixed. B is not, nothing is due yet.
    # (The two-miss rule: the first rescan only marks A's findings missed; before it, one fixed them.)
    lab_a.stop()
    no_wait = RescanPolicy(confirm_fixed_after=timedelta(0))
    scan_and_store(repo, targets, web_ports=web_ports, policy=no_wait)
    assert {f["status"] for f in repo.findings() if f["ip"] == a_ip} == {"open"}
    assert all(f["missed_since"] is not None for f in repo.findings() if f["ip"] == a_ip)
    scan_and_store(repo, targets, web_ports=web_ports, policy=no_wait)
    assert {f["status"] for f in repo.findings() if f["ip"] == a_ip} == {"fixed"}
    second = notify(engine, config, dry_run=False, clock=clock)
    assert second.delivery.sent == []
    assert store.case(case_a.id).state == C.FIXED and store.case(case_b.id).state == C.NOTIFIED
    assert [e["to_state"] for e in store.history(case_a.id) if e["kind"] == "transition"] == [
        C.NEW, C.NOTIFIED, C.FIXED]

    clock.offset = timedelta(days=15)
    third = notify(engine, config, dry_run=False, clock=clock)
    assert len(third.delivery.sent) == 1 and store.case(case_b.id).followups == 1
    assert smtp.received[-1].rcpt_tos == ["security@hospital-b.example.org"]
    assert str(smtp.received[-1].message["Subject"]).strip().startswith("Reminder:")

    # No escalation without a rescan since the reminder: it would say what no scan has seen.
    clock.offset = timedelta(days=30)
    assert notify(engine, config, dry_run=False, clock=clock).delivery.sent == []
    scan_and_store(repo, targets, web_ports=web_ports, policy=no_wait, shift=timedelta(days=29))
    fourth = notify(engine, config, dry_run=False, clock=clock)
    assert len(fourth.delivery.sent) == 1 and store.case(case_b.id).escalated_at is not None
    assert smtp.received[-1].rcpt_tos == ["abuse@isp.example.net"]
    assert str(smtp.received[-1].message["Subject"]).strip().startswith("For your customer:")

    clock.offset = timedelta(days=61)
    notify(engine, config, dry_run=False, clock=clock)
    assert store.case(case_b.id).state == C.STALE
    again = notify(engine, config, dry_run=False, clock=clock)  # nothing more, ever twice
    assert again.delivery.sent == [] and len(smtp.received) == 4
    assert len({r.message["Message-ID"] for r in smtp.received}) == 4

    # No patient data in any message, dry-run file, export or stored message.
    exposures = list(findings_exposures(engine).values())
    attributions = store.attributions()
    intelmq = intelmq_lines(exposures, attributions, now=clock())
    assert '"classification.identifier": "accessible-dicom"' in intelmq and "source.abuse_contact" in intelmq
    texts = [t for r in smtp.received for t in texts_of(r.content)]
    texts += [t for path in dry.written for t in texts_of(path.read_bytes())]
    texts += [t for m in store.messages() for t in texts_of(m.raw)]
    texts += [intelmq, *per_owner_csv(exposures, attributions).values()]
    assert len(texts) > 20
    assert_no_patient_data(texts, world["planted"])
    assert violations() == []
