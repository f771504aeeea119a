"""What pacswatch mails, when the text in it came from hostile peers (issue 11) and when the
notice must be one a hospital's IT person can act on (issue 12, item 10).

A real scan of lab servers on loopback (an open DICOM archive, an AE-restricted one, one behind
TLS client certificates, an open Orthanc whose /system Version is "1\\n\\nURGENT: call ..."),
stored in a real database; owners and contacts as an RDAP registry or a security.txt could
give them (a CRLF in a name and in a contact, two addresses in one contact); `pacswatch notify`
through a real SMTP server on loopback. The assertions are on what that server received.
"""

from __future__ import annotations

import json
import os
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for extra in (_TESTS, _TESTS / "attribution", _TESTS / "notify"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from datetime import UTC

from lab_scan import scan_and_store
from loopback_servers import loopback_only, violations
from smtp_servers import SmtpServer

from pacswatch.attribution.owner import Attribution, Contact
from pacswatch.cli import main
from pacswatch.lab import Lab
from pacswatch.lab.web import VERSION_TEXT, start_web_lab
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository

BASE = f"127.64.{os.getpid() % 200}"
GOOD_CONTACT = "it@good-hospital.example.org"
HOSTILE_NAME = "Good Hospital\r\n\r\nURGENT: call +1555 now"
CRLF_CONTACT = "soc@crlf-clinic.example.org\r\nBcc: spy@evil.example"
TWO_CONTACTS = "a@two.example.org, b@two.example.org"
# The headers a notice has, exactly: a header injected through a name or a contact would add one.
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "X-Pacswatch-Case", "X-Pacswatch-Key",
           "MIME-Version", "Content-Type"]


def _config(path: Path, smtp: SmtpServer, *, sender: str) -> str:
    path.write_text(f"""
[sender]
organisation = "Example, CERT"
{sender}

[smtp]
enabled = true
host = "127.0.0.1"
port = {smtp.port}
security = "none"
helo = "pacswatch.test"
""")
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-mail")
    with loopback_only():
        lab = Lab(f"{BASE}.0", port=0, names=["open-archive", "ae-restricted", "tls-client-cert"]).__enter__()
        web = start_web_lab(f"{BASE}.200", f"{BASE}.201", kinds=("version-text",))
        smtp = SmtpServer().start()
        db = str(tmp / "pacswatch.db")
        by_kind = {e.kind: e for e in [*lab.manifest, *web.endpoints]}
        with Repository.open(db) as repo:
            records = scan_and_store(repo, [e.address for e in by_kind.values()],
                                     web_ports=frozenset({by_kind["version-text"].port}))
            severities = {r.ip: r.severity for r in records}
            # A database written before versions were checked holds the peer's text as it came.
            with repo.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE services SET product_version = ? WHERE ip = ?",
                                     (VERSION_TEXT, by_kind["version-text"].ip))
            # Owners as registries and security.txt files gave them: one case each.
            routes = {"version-text": ("rdap:GOOD", HOSTILE_NAME, GOOD_CONTACT),
                      "tls-client-cert": ("rdap:GOOD", HOSTILE_NAME, GOOD_CONTACT),
                      "open-archive": ("rdap:CRLF", "CRLF Clinic", CRLF_CONTACT),
                      "ae-restricted": ("rdap:TWO", "Two Contacts Ltd", TWO_CONTACTS)}
            NotifyStore(repo.engine).save_attributions(
                [(Attribution(by_kind[kind].ip, key, name, Contact(contact, "owner", "rdap"), None, 0.9,
                              ("test",)), []) for kind, (key, name, contact) in routes.items()],
                _now())
        good = _config(tmp / "notify.toml", smtp, sender='from = "notify@example.org"')
        default_sender = _config(tmp / "default-sender.toml", smtp, sender="")
        yield {"db": db, "tmp": tmp, "smtp": smtp, "config": good, "default_sender": default_sender,
               "by_kind": by_kind, "severities": severities}
        smtp.stop()
        web.stop()
        lab.stop()


def _now():
    from datetime import datetime

    return datetime.now(UTC)


def run(world, capsys, *argv: str, config: str | None = None) -> tuple[int, str, str]:
    with loopback_only():
        code = main([*argv, "--database", world["db"], "--config", config or world["config"]])
    out, err = capsys.readouterr()
    return code, out, err


def _lines_starting(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith(word)]


def test_the_lab_is_what_the_notices_assume(world):
    s, k = world["severities"], world["by_kind"]
    assert s[k["version-text"].ip] == "critical" and s[k["open-archive"].ip] == "critical"
    assert s[k["ae-restricted"].ip] == "low" and s[k["tls-client-cert"].ip] == "low"


def test_enabled_as_a_string_is_an_error_not_a_yes(world, capsys):
    # `enabled = "false"` once read as bool("false"), which is True: it sent mail.
    path = world["tmp"] / "string-bool.toml"
    path.write_text(Path(world["config"]).read_text().replace("enabled = true", 'enabled = "false"'))
    code, _, err = run(world, capsys, "notify", config=str(path))
    assert code == 2 and '[smtp] enabled: must be true or false (without quotes), not \'false\'' in err
    assert "Traceback" not in err and world["smtp"].received == []


def test_the_default_sender_is_refused_for_real_sending(world, capsys):
    code, _, err = run(world, capsys, "notify", config=world["default_sender"])
    assert code == 2 and "[sender] from" in err and "pacswatch@localhost" in err
    assert world["smtp"].received == []


def test_dry_run_writes_a_readable_txt_beside_each_eml(world, capsys):
    out_dir = world["tmp"] / "review"
    code, out, _ = run(world, capsys, "notify", "--dry-run", "--out", str(out_dir))
    assert code == 0, out
    emls = sorted(out_dir.glob("*.eml"))
    assert len(emls) == 1  # the two other cases have no usable recipient
    eml = message_from_bytes(emls[0].read_bytes(), policy=policy.default)
    assert list(eml.keys()) == HEADERS and [a.addr_spec for a in eml["To"].addresses] == [GOOD_CONTACT]
    txt = emls[0].with_suffix(".txt").read_text()
    assert txt.startswith('From: "Example, CERT" <notify@example.org>\nTo: it@good-hospital.example.org\n')
    assert "WHAT WE SAW" in txt and "----- attachment pacswatch-case-" in txt
    assert _lines_starting(txt, "URGENT") == []
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([emls[0].name, emls[0].with_suffix(".txt").name])
    assert world["smtp"].received == []


def test_notify_sends_to_the_one_valid_recipient_and_skips_the_others_with_a_note(world, capsys):
    code, out, err = run(world, capsys, "notify")
    assert code == 0, out + err
    # A CRLF in one contact, two addresses in another: those recipients are skipped, each with a
    # note naming the case; the run goes on and the valid one is sent.
    skipped = [line for line in out.splitlines() if "recipient skipped" in line]
    assert len(skipped) == 2, out
    assert any("control character" in line for line in skipped)
    assert any("not exactly one plain e-mail address" in line and "two.example.org" in line for line in skipped)
    assert "sent 1" in out
    received = world["smtp"].received
    assert [r.rcpt_tos for r in received] == [[GOOD_CONTACT]]
    assert received[0].mail_from == "notify@example.org"

    raw = received[0].content
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith((" ", "\t"))] == HEADERS
    msg = message_from_bytes(raw, policy=policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == [GOOD_CONTACT]
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Example, CERT", "notify@example.org")

    body = msg.get_body(("plain",)).get_content()
    assert _lines_starting(body, "URGENT") == [] and "Bcc" not in body
    # A registrant name that held control characters is not repeated, even escaped: "Hello,".
    assert body.splitlines()[0] == "Hello,"
    assert "1555" not in body  # nor the version: it is not a version
    (attachment,) = [p for p in msg.iter_attachments()]
    csv_text = attachment.get_content()
    assert _lines_starting(csv_text, "URGENT") == [] and "1555" not in csv_text


def test_a_queued_message_with_a_bad_recipient_is_never_sent(world, capsys):
    # An outbox row written by an older pacswatch, before recipients were checked.
    from pacswatch.notify import outbox as O

    with Repository.open(world["db"]) as repo:
        store = NotifyStore(repo.engine)
        case = next(c for c in store.cases() if c.owner_key == "rdap:CRLF")
        now = _now()
        old = O.OutboxMessage("0" * 32, case.id, "initial", 1, case.round, CRLF_CONTACT, "old notice",
                              b"Subject: old notice\r\n\r\nbody\r\n", now, now)
        assert store.enqueue(old)
    code, out, _ = run(world, capsys, "notify")
    assert code == 0 and "sent 0, retrying 1" in out and "not sent: control character in e-mail address" in out, out
    assert len(world["smtp"].received) == 1 and world["smtp"].handler.data_attempts == 1


def test_the_notice_counts_what_is_exposed_and_lists_the_protected_apart(world):
    (received,) = world["smtp"].received
    msg = received.message
    web = world["by_kind"]["version-text"]
    tls = world["by_kind"]["tls-client-cert"]
    # One exposed service (the open Orthanc); the TLS archive demanding client certificates is
    # reachable but protected: not in the count, listed apart, with advice for TLS.
    assert msg["Subject"].startswith("1 exposed medical imaging service (critical) [pacswatch case ")
    body = msg.get_body(("plain",)).get_content()
    seen, protected = body.split("REACHABLE BUT PROTECTED", 1)
    assert f"{web.ip}:{web.port}" in seen and f"{tls.ip}:{tls.port}" not in seen
    assert f"{tls.ip}:{tls.port}" in protected.split("HOW TO FIX IT")[0]
    assert "DICOM over TLS with client certificates:" in body
    assert "use DICOM TLS (PS3.15" not in body  # advice that is already true for it is left out
    verify = body.split("HOW TO VERIFY", 1)[1].split("WHY IT MATTERS")[0]
    assert f"http://{web.ip}:{web.port}/system" in verify
    assert tls.ip not in verify  # its check would already pass: none is given
    assert verify.count("today it prints 200") == 1


def test_intelmq_export_keeps_the_text_in_json_and_classifies_protected_as_accessible(world, capsys):
    code, out, _ = run(world, capsys, "export", "intelmq")
    assert code == 0
    assert _lines_starting(out, "URGENT") == [] and len(out.splitlines()) == 4
    events = {e["source.ip"]: e for e in map(json.loads, out.splitlines())}
    k = world["by_kind"]
    assert "extra.product_version" not in events[k["version-text"].ip]
    kinds = {kind: (events[k[kind].ip]["classification.type"], events[k[kind].ip]["classification.identifier"])
             for kind in k}
    assert kinds == {"open-archive": ("vulnerable-system", "accessible-dicom"),
                     "version-text": ("vulnerable-system", "accessible-pacs-web"),
                     "ae-restricted": ("potentially-unwanted-accessible", "accessible-dicom-protected"),
                     "tls-client-cert": ("potentially-unwanted-accessible", "accessible-dicom-protected")}
    assert violations() == []


def test_owners_add_refuses_control_characters(world, capsys):
    code, _, err = run(world, capsys, "owners", "add", "192.0.2.0/24", "--name", "Doc Net",
                       "--contact", "noc@example.org\n")
    assert code == 2 and "control character" in err
    code, _, err = run(world, capsys, "owners", "add", "192.0.2.0/24", "--name", "Doc\nNet",
                       "--contact", "noc@example.org")
    assert code == 2 and '--name "Doc\\x0aNet" contains a control character' in err
    code, _, err = run(world, capsys, "owners", "add", "192.0.2.0/24", "--name", "Doc Net",
                       "--contact", "noc@example.org, spy@evil.example")
    assert code == 2 and "not exactly one plain e-mail address" in err
    code, out, _ = run(world, capsys, "owners", "list")
    assert "Doc" not in out
