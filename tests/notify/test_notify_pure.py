"""The pure decisions of notification: case transitions, outbox rules, rendering, exports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.notify import cases as C
from pacswatch.notify import outbox as O
from pacswatch.notify.csvexport import exposures_csv
from pacswatch.notify.exports import intelmq_event
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.render import Renderer, Sender, build_email

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
POLICY = C.Policy.days(followup=14, max_followups=1, escalate=14, stale=30)


def view(exposed: bool, at: datetime, port: int = 104) -> C.ServiceView:
    return C.ServiceView("192.0.2.10", port, exposed, at, "critical" if exposed else None)


def notified_case() -> C.Case:
    case, _ = C.open_case("local:1", "Example Hospital", T0)
    case = C.Case(**{**case.__dict__, "id": 1})
    case, transitions = C.sent(case, C.INITIAL, T0 + timedelta(minutes=5), "it@example.org")
    assert case.state == C.NOTIFIED and transitions[0].to_state == C.NOTIFIED
    return case


def test_new_case_asks_for_a_first_notice():
    case, t = C.open_case("local:1", "Example Hospital", T0)
    assert (case.state, t.from_state, t.to_state) == (C.NEW, None, C.NEW)
    assert C.review(case, [view(True, T0)], T0, POLICY).send == C.INITIAL


def test_a_case_left_without_services_closes():
    # Its services moved to a closer owner's case: it must not stay 'new' (or notified) forever.
    new, _ = C.open_case("local:1", "Example Hospital", T0)
    for case in (new, notified_case()):
        review = C.review(case, [], T0 + DAY, POLICY)
        assert review.case.state == C.CLOSED and review.send is None
        assert review.transitions[0].why == "no services left: they now belong to other owners' cases"


def test_fixed_needs_a_rescan_after_the_notice():
    case = notified_case()
    # closed, but seen closed before we wrote: not verified yet
    assert C.review(case, [view(False, T0 + timedelta(minutes=1))], T0 + DAY, POLICY).case.state == C.NOTIFIED
    review = C.review(case, [view(False, T0 + DAY), view(False, T0 + DAY, 4242)], T0 + DAY, POLICY)
    assert review.case.state == C.FIXED and review.case.fixed_at == T0 + DAY
    assert "seen closed by the rescan" in review.transitions[0].why
    # one of two still open: not fixed
    half = [view(False, T0 + DAY), view(True, T0 + DAY, 4242)]
    assert C.review(case, half, T0 + DAY, POLICY).case.state == C.NOTIFIED


def test_no_reminder_or_escalation_without_a_rescan_since_the_last_message():
    # A reminder says "our latest scan still finds ...": not when nothing was looked at since.
    case = notified_case()
    review = C.review(case, [view(True, T0)], T0 + 15 * DAY, POLICY)
    assert review.send is None and review.why == "a reminder waits for a rescan that finds the services still exposed"
    assert C.review(case, [view(True, T0 + 14 * DAY)], T0 + 15 * DAY, POLICY).send == C.FOLLOWUP
    case, _ = C.sent(case, C.FOLLOWUP, T0 + 15 * DAY, "it@example.org")
    assert C.review(case, [view(True, T0 + 14 * DAY)], T0 + 30 * DAY, POLICY).send is None
    assert C.review(case, [view(True, T0 + 29 * DAY)], T0 + 30 * DAY, POLICY).send == C.ESCALATION


def test_followup_then_escalation_then_stale():
    case = notified_case()
    assert C.review(case, [view(True, T0 + DAY)], T0 + 13 * DAY, POLICY).send is None
    review = C.review(case, [view(True, T0 + 14 * DAY)], T0 + 15 * DAY, POLICY)
    assert review.send == C.FOLLOWUP
    case, _ = C.sent(case, C.FOLLOWUP, T0 + 15 * DAY, "it@example.org")
    assert C.review(case, [view(True, T0 + 20 * DAY)], T0 + 20 * DAY, POLICY).send is None
    review = C.review(case, [view(True, T0 + 29 * DAY)], T0 + 30 * DAY, POLICY)
    assert review.send == C.ESCALATION
    assert C.review(case, [view(True, T0 + 29 * DAY)], T0 + 30 * DAY, POLICY, can_escalate=False).send is None
    case, _ = C.sent(case, C.ESCALATION, T0 + 30 * DAY, "abuse@example.net")
    review = C.review(case, [view(True, T0 + 59 * DAY)], T0 + 61 * DAY, POLICY)
    assert review.case.state == C.STALE and review.send is None
    # a stale case still closes as fixed when a rescan proves it
    assert C.review(review.case, [view(False, T0 + 70 * DAY)], T0 + 70 * DAY, POLICY).case.state == C.FIXED


def test_acknowledged_gets_reminders_but_no_escalation():
    case, _ = C.acknowledge(notified_case(), T0 + DAY, "patching next week")
    case, _ = C.sent(case, C.FOLLOWUP, T0 + 15 * DAY, "it@example.org")
    assert C.review(case, [view(True, T0 + 40 * DAY)], T0 + 40 * DAY, POLICY).send is None


def test_exposed_again_opens_a_new_round():
    case = C.review(notified_case(), [view(False, T0 + DAY)], T0 + DAY, POLICY).case
    review = C.review(case, [view(True, T0 + 5 * DAY)], T0 + 5 * DAY, POLICY)
    assert (review.case.state, review.case.round, review.send) == (C.NEW, 2, C.INITIAL)
    assert review.case.notified_at is None and "exposed again" in review.transitions[0].why


def test_closed_is_final_and_illegal_moves_raise():
    case, t = C.close(notified_case(), T0 + DAY, "owner asked us to stop")
    assert case.state == C.CLOSED and t.why == "owner asked us to stop"
    assert C.review(case, [view(True, T0 + 90 * DAY)], T0 + 90 * DAY, POLICY).send is None
    with pytest.raises(C.TransitionError):
        C.move(case, C.NEW, T0, "no")
    with pytest.raises(C.TransitionError):
        C.acknowledge(C.open_case("k", "n", T0)[0], T0, "")


# ------------------------------------------------------------------ outbox

def message(**kw) -> O.OutboxMessage:
    base = dict(key=O.message_key(1, 1, "initial", 1, "a@example.org"), case_id=1, kind="initial", seq=1, round=1,
                recipient="a@example.org", subject="s", raw=b"x", created_at=T0, next_attempt_at=T0)
    return O.OutboxMessage(**{**base, **kw})


def test_keys_are_stable_and_distinct():
    assert O.message_key(1, 1, "initial", 1, "A@Example.org ") == O.message_key(1, 1, "initial", 1, "a@example.org")
    keys = {O.message_key(1, r, k, s, "a@example.org") for r in (1, 2) for k in ("initial", "followup") for s in (1, 2)}
    assert len(keys) == 8


def test_failures_back_off_then_fail_but_are_kept():
    backoff = O.Backoff(first=timedelta(seconds=10), factor=2, cap=timedelta(seconds=60), max_attempts=3,
                        max_permanent=2)
    msg = message()
    delays = []
    for attempt in range(1, 4):
        msg = O.claim(msg, T0)
        assert msg.attempts == attempt and msg.state == O.SENDING
        msg = O.after_send(msg, O.SendResult(False, False, "451 try later"), T0, backoff)
        delays.append((msg.next_attempt_at - T0).total_seconds())
    assert delays == [10, 20, 40] and msg.state == O.FAILED and msg.last_error == "451 try later"
    permanent = O.after_send(O.claim(message(attempts=1), T0), O.SendResult(False, True, "550 no"), T0, backoff)
    assert permanent.state == O.FAILED
    assert O.retry_failed(permanent, T0).state == O.PENDING
    assert O.after_send(O.claim(message(), T0), O.SendResult(True, detail="250"), T0, backoff).state == O.SENT


def test_stale_claims_are_released_after_the_lease():
    claimed = O.claim(message(), T0)
    assert O.release_stale(claimed, T0 + timedelta(minutes=5), timedelta(minutes=15)) is None
    released = O.release_stale(claimed, T0 + timedelta(minutes=15), timedelta(minutes=15))
    assert released.state == O.PENDING and "resending" in released.last_error


def test_rate_limits_and_suppression():
    limits = O.RateLimits(per_recipient=2, per_recipient_window=DAY, global_per_window=3,
                          global_window=timedelta(minutes=1), suppression=3 * DAY)
    assert O.rate_wait(T0, [], [], limits) is None
    two = [T0 - timedelta(hours=2), T0 - timedelta(hours=1)]
    assert O.rate_wait(T0, two, [], limits) == T0 - timedelta(hours=2) + DAY
    seconds = [T0 - timedelta(seconds=s) for s in (10, 20, 30)]
    assert O.rate_wait(T0, [], seconds, limits) == T0 - timedelta(seconds=30) + timedelta(minutes=1)
    assert O.suppressed_until(T0, "initial", [T0 - DAY], limits) == T0 + 2 * DAY
    assert O.suppressed_until(T0, "initial", [T0 - 4 * DAY], limits) is None


# ------------------------------------------------------------------ rendering and exports

EXPOSURES = [
    Exposure("192.0.2.10", 4242, service="dicom", product="Orthanc", product_version="1.12.1", severity="critical",
             first_seen=T0, last_seen=T0 + DAY, studies=12, patients=5, reasons=("C-FIND lists 12 studies.",)),
    Exposure("192.0.2.11", 11112, service="dicom", product="DCMTK dcmqrscp", severity="high", transport="tls",
             tls=True, first_seen=T0, last_seen=T0, reasons=("=cmd|' /C calc'!A0",)),
    Exposure("192.0.2.12", 8042, service="http", product="Orthanc", severity="high", first_seen=T0, last_seen=T0),
]


def test_notice_has_every_section_and_product_advice():
    case = C.Case("domain:example.org", C.NOTIFIED, T0, T0, id=42, owner_name="Example Hospital", notified_at=T0)
    rendered = Renderer().render(C.INITIAL, case, EXPOSURES, sender=Sender(organisation="Example CERT"),
                                 owner_name="Example Hospital")
    body = rendered.body
    for section in ("SUMMARY", "WHAT WE SAW", "HOW TO FIX IT", "HOW TO VERIFY", "WHY IT MATTERS",
                    "NOT THE RIGHT CONTACT"):
        assert section in body
    for setting in ("DicomAlwaysAllowFind", "DicomCheckCalledAet", "AuthenticationEnabled", "AETable",
                    "HostTable", "TLS", "echoscu +tla -ic -aet VERIFY -aec ANY-SCP 192.0.2.11 11112",
                    "--max-time 10 http://192.0.2.12:8042/system"):
        assert setting in body, setting
    assert "first seen 2025-03-01 09:00 UTC, last seen 2025-03-02 09:00 UTC" in body
    assert "12 studies, 5 patients" in body and "None" not in body
    assert rendered.subject == "3 exposed medical imaging services (critical) [pacswatch case 42]"
    assert "'=cmd" in rendered.attachment  # the CSV defuses spreadsheet formulas


def test_email_is_deterministic_for_a_key():
    case = C.Case("k", C.NEW, T0, T0, id=1, owner_name="X")
    rendered = Renderer().render(C.INITIAL, case, EXPOSURES[:1], sender=Sender(from_addr="cert@example.org"))
    one = build_email(rendered, sender=Sender(from_addr="cert@example.org"), recipient="it@example.org", key="k1",
                      at=T0, case_id=1)
    two = build_email(rendered, sender=Sender(from_addr="cert@example.org"), recipient="it@example.org", key="k1",
                      at=T0, case_id=1)
    assert one["Message-ID"] == "<k1@example.org>" and one["Auto-Submitted"] == "auto-generated"
    assert [p.get_filename() for p in one.iter_attachments()] == ["pacswatch-case-1.csv"]
    assert one.as_bytes().split(b"\n\n", 1)[0].count(b"Message-ID") == 1
    assert one["Subject"] == two["Subject"] and one.get_body().get_content() == two.get_body().get_content()


def test_intelmq_event_uses_harmonised_fields():
    attribution = {"contact": "abuse@example.net", "owner_name": "Example ISP", "facts": [
        {"kind": "ptr", "value": "pacs.example.org", "detail": {"confirmed": True}},
        {"kind": "asn", "value": "64500", "detail": {}}, {"kind": "asn.holder", "value": "EX-AS", "detail": {}},
        {"kind": "rdap.country", "value": "nl", "detail": {}},
        {"kind": "rdap.network", "value": "NET", "detail": {"cidr": ["192.0.2.0/24"]}}]}
    event = intelmq_event(EXPOSURES[0], attribution, now=T0)
    assert event["source.ip"] == "192.0.2.10" and event["source.port"] == 4242
    assert event["protocol.application"] == "dicom" and event["protocol.transport"] == "tcp"
    assert (event["classification.taxonomy"], event["classification.type"], event["classification.identifier"]) == (
        "vulnerable", "vulnerable-system", "accessible-dicom")
    assert event["source.abuse_contact"] == "abuse@example.net" and event["source.asn"] == 64500
    assert event["source.reverse_dns"] == "pacs.example.org" and event["source.geolocation.cc"] == "NL"
    assert event["source.network"] == "192.0.2.0/24"
    assert event["extra.studies"] == 12 and event["extra.product"] == "Orthanc"
    assert json.loads(json.dumps(event)) == event
    assert intelmq_event(EXPOSURES[2], None, now=T0)["protocol.application"] == "http"
    two = Exposure("192.0.2.13", 104, service="dicom", severity="high", reasons=("Accepts any caller.", "C-FIND is allowed."))
    assert intelmq_event(two, None, now=T0)["event_description.text"] == "Accepts any caller. C-FIND is allowed."


def test_csv_has_header_and_rows():
    text = exposures_csv(EXPOSURES, extra={"owner": "Example"})
    lines = text.split("\r\n")
    assert lines[0].startswith("owner,ip,port") and len([line for line in lines if line]) == 4
