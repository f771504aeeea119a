"""A follow-up or an escalation sent now at a person's request (notify/manual.py, the dashboard's
"send follow-up now" and "escalate"): the same members, routes, message and outbox as a pass,
through a real SMTP server on loopback, on SQLite and PostgreSQL; and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacswatch.attribution.owner import Attribution, Contact
from pacswatch.notify import cases as C
from pacswatch.notify.config import from_dict
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.manual import NotSendable, plan_now, send_now
from pacswatch.notify.store import NotifyStore

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
IP, OTHER = "192.0.2.10", "192.0.2.11"


def _config(smtp_port: int):
    return from_dict({"sender": {"from": "cert@example.org"},
                      "smtp": {"enabled": True, "host": "127.0.0.1", "port": smtp_port, "security": "none",
                               "helo": "pacswatch.test", "timeout": 10.0},
                      "notify": {"suppression_days": 0}})


def _case(store: NotifyStore, *, notified: bool) -> C.Case:
    case = store.create_case(*C.open_case("local:1", "Hospital", NOW - timedelta(days=20)))
    for ip in (IP, OTHER):
        store.assign(ip, 104, case.stored_id, NOW - timedelta(days=20))
        contact = Contact("it@hospital.example", "owner", "local:192.0.2.0/24")
        escalation = Contact("abuse@isp.example", "provider", "local:192.0.2.0/24")
        store.save_attribution(Attribution(ip, "local:1", "Hospital", contact, escalation, 0.95, ("local",)), [], NOW)
    if notified:
        case, transitions = C.sent(case, C.INITIAL, NOW - timedelta(days=15), "it@hospital.example")
        store.save_case(case, transitions)
    return case


def _exposures(other_open: bool = True) -> dict:
    seen = NOW - timedelta(hours=1)
    return {(IP, 104): Exposure(IP, 104, service="dicom", severity="critical", last_seen=seen, first_seen=seen),
            (OTHER, 104): Exposure(OTHER, 104, service="dicom", severity="high", last_seen=seen, first_seen=seen,
                                   status="open" if other_open else "fixed")}


def test_a_followup_and_an_escalation_go_now_through_the_outbox(engine, smtp_server):
    store = NotifyStore(engine)
    case = _case(store, notified=True)
    config = _config(smtp_server.port)
    sent = send_now(store, case.stored_id, C.FOLLOWUP, _exposures(), config=config, clock=lambda: NOW)
    assert sent.message.key in sent.delivery.sent
    assert [r.rcpt_tos for r in smtp_server.received] == [["it@hospital.example"]]
    assert store.case(case.stored_id).followups == 1  # as a pass's follow-up counts
    escalated = send_now(store, case.stored_id, C.ESCALATION, _exposures(), config=config, clock=lambda: NOW)
    assert escalated.message.recipient == "abuse@isp.example"
    assert store.case(case.stored_id).escalated_at == NOW
    body = smtp_server.received[1].message.get_body(("plain",)).get_content()
    assert IP in body and OTHER in body
    with pytest.raises(NotSendable, match="already queued or sent"):
        send_now(store, case.stored_id, C.ESCALATION, _exposures(), config=config, clock=lambda: NOW)
    assert len(smtp_server.received) == 2


def test_what_cannot_be_sent_now_says_why(engine):
    store = NotifyStore(engine)
    config = _config(25)
    new = _case(store, notified=False)
    with pytest.raises(NotSendable, match="no first notice yet"):
        plan_now(store, new.stored_id, C.FOLLOWUP, _exposures(), config=config, now=NOW)
    with pytest.raises(NotSendable, match="only a follow-up or an escalation"):
        plan_now(store, new.stored_id, C.INITIAL, _exposures(), config=config, now=NOW)
    with pytest.raises(NotSendable, match="there is no case"):
        plan_now(store, 999, C.FOLLOWUP, _exposures(), config=config, now=NOW)
    closed, t = C.close(new, NOW, "done")
    store.save_case(closed, (t,))
    with pytest.raises(NotSendable, match="is closed"):
        plan_now(store, new.stored_id, C.FOLLOWUP, _exposures(), config=config, now=NOW)


def test_a_reminder_names_only_what_is_still_exposed_and_never_an_opted_out_address(engine):
    store = NotifyStore(engine)
    case = _case(store, notified=True)
    config = _config(25)
    message = plan_now(store, case.stored_id, C.FOLLOWUP, _exposures(other_open=False), config=config, now=NOW)
    assert IP.encode() in message.raw and OTHER.encode() not in message.raw
    with engine.begin() as conn:  # the owner opts IP out: nothing exposed is left to name
        from pacswatch.store.tables import optouts

        conn.execute(optouts.insert(), {"cidr": IP, "contact": "it@hospital.example", "requested_at": NOW,
                                        "added_at": NOW, "added_by": "test", "note": None})
    with pytest.raises(NotSendable, match="no service of case"):
        plan_now(store, case.stored_id, C.FOLLOWUP, _exposures(other_open=False), config=config, now=NOW)
