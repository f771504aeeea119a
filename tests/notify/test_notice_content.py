"""What a notice says (issue 12, item 10), rendered from Exposures (pure): the count is what
must be fixed, protected services are apart or left out, one check per product and port that
succeeds today, advice that is not already true."""

from __future__ import annotations

from datetime import UTC, datetime

from pacswatch.notify import cases as C
from pacswatch.notify.advice import verify_checks
from pacswatch.notify.exposure import Exposure, from_finding
from pacswatch.notify.render import Renderer, Sender

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CASE = C.Case("local:1", C.NOTIFIED, T0, T0, id=5, owner_name="Example Hospital", notified_at=T0)
OPEN = [Exposure(f"192.0.2.{n}", 104, service="dicom", product="Orthanc", severity="critical", first_seen=T0,
                 last_seen=T0) for n in (10, 11)]
GUESSED = Exposure("192.0.2.12", 104, service="dicom", product="Orthanc", severity="high", called_ae="ORTHANC")
WEB = Exposure("192.0.2.20", 8042, service="http", product="Orthanc", severity="critical")
REFUSING = Exposure("192.0.2.30", 104, service="dicom", severity="low",
                    reasons=("DICOM service refuses unknown callers (called-ae-not-recognized).",))
CLIENT_CERT = Exposure("192.0.2.31", 2762, transport="tls", service="dicom", severity="low", tls=True,
                       client_cert_required=True)


def test_one_check_per_product_port_and_called_ae_and_none_for_protected():
    checks = verify_checks([*OPEN, GUESSED, WEB, REFUSING, CLIENT_CERT])
    assert [c.command for c in checks] == [
        "echoscu -aet VERIFY -aec ANY-SCP 192.0.2.10 104",
        "echoscu -aet VERIFY -aec ORTHANC 192.0.2.12 104",
        "curl -s -o /dev/null -w '%{http_code}\\n' --max-time 10 http://192.0.2.20:8042/system",
    ]
    assert checks[0].others == ("192.0.2.11",) and checks[0].title == "Orthanc, DICOM on port 104"


def test_servers_checked_with_the_same_called_ae_are_one_check():
    # One server was found behind the default title ANY-SCP, the other takes any title: both are
    # checked with -aec ANY-SCP, so one heading and one command, not the same one twice.
    guessed = Exposure("192.0.2.14", 104, service="dicom", product="Orthanc", severity="critical",
                       called_ae="ANY-SCP")
    (check,) = verify_checks([*OPEN, guessed])
    assert check.command == "echoscu -aet VERIFY -aec ANY-SCP 192.0.2.10 104"
    assert check.others == ("192.0.2.11", "192.0.2.14")


def test_a_stored_called_ae_that_is_not_an_ae_title_never_reaches_the_command():
    hostile = from_finding({"ip": "192.0.2.13", "port": 104, "service": "dicom", "severity": "high"},
                           {"dicom": {"called_ae_found": "X; rm -rf ~"}})
    (check,) = verify_checks([hostile])
    assert check.command == "echoscu -aet VERIFY -aec ANY-SCP 192.0.2.13 104"


def test_protected_services_are_listed_apart_or_left_out():
    listed = Renderer().render(C.INITIAL, CASE, [*OPEN, REFUSING, CLIENT_CERT], sender=Sender())
    assert listed.subject == "2 exposed medical imaging services (critical) [pacswatch case 5]"
    assert "REACHABLE BUT PROTECTED" in listed.body and "192.0.2.31:2762" in listed.body
    assert "192.0.2.30" in listed.attachment
    left_out = Renderer().render(C.INITIAL, CASE, [*OPEN, REFUSING, CLIENT_CERT],
                                 sender=Sender(list_protected=False))
    assert left_out.subject == listed.subject
    assert "REACHABLE BUT PROTECTED" not in left_out.body and "192.0.2.30" not in left_out.body
    assert "192.0.2.30" not in left_out.attachment and "DICOM over TLS with client certificates" not in left_out.body


def test_a_case_with_only_protected_services_says_so():
    initial = Renderer().render(C.INITIAL, CASE, [REFUSING, CLIENT_CERT], sender=Sender())
    assert initial.subject == "2 medical imaging services reachable but protected [pacswatch case 5]"
    assert "Nothing is exposed now" in initial.body and "HOW TO VERIFY" not in initial.body
    assert "Any DICOM archive" not in initial.body  # its advice is already true for them
    followup = Renderer().render(C.FOLLOWUP, CASE, [REFUSING], sender=Sender(), followup_number=1)
    assert "still finds 1 medical\n  imaging service on your network reachable" in followup.body


def test_a_default_account_is_checked_with_that_account():
    # Without the account, curl gets 401 today: a check that already passes proves nothing.
    default = Exposure("192.0.2.21", 8042, service="http", product="Orthanc", severity="critical",
                       http_auth="default-credentials")
    (check,) = verify_checks([default])
    assert check.command == ("curl -s -o /dev/null -w '%{http_code}\\n' --max-time 10 -u orthanc:orthanc "
                             "http://192.0.2.21:8042/system")
    assert check.today == "it prints 200 (the documented account orthanc:orthanc is accepted)"
    assert len(verify_checks([default, WEB])) == 2  # one login, one without: two checks


def test_a_notice_about_many_services_lists_the_first_ones_and_counts_the_rest():
    # 60 open servers and 30 that refuse unknown callers: the body lists 25 of each, in address
    # order (192.0.2.9 before 192.0.2.10), says how many more; the CSV holds all 90.
    many = [Exposure(f"192.0.2.{n}", 104, service="dicom", product="Orthanc", severity="high") for n in range(60, 0, -1)]
    refusing = [Exposure(f"198.51.100.{n}", 104, service="dicom", severity="low") for n in range(1, 31)]
    rendered = Renderer().render(C.INITIAL, CASE, [*many, *refusing], sender=Sender())
    body = rendered.body
    assert rendered.subject.startswith("60 exposed medical imaging services")
    listed = [line.split()[1] for line in body.splitlines() if line.startswith("  - 192.0.2.")]
    assert listed == [f"192.0.2.{n}:104" for n in range(1, 26)]
    assert "  - and 35 more like these, each in the attached pacswatch-case-5.csv" in body
    assert "  - and 5 more like these, each in the attached pacswatch-case-5.csv" in body
    (same,) = [line for line in body.split("\n\n") if "The same for" in line]
    same = " ".join(same.split())
    assert "-aec ANY-SCP 192.0.2.1 104" in same and "The same for 192.0.2.2, 192.0.2.3, 192.0.2.4," in same
    assert same.endswith("192.0.2.26 and 34 more, in the attached pacswatch-case-5.csv.")
    assert len(rendered.attachment.splitlines()) == 1 + 90
