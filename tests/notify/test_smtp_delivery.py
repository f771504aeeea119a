"""Delivery through a real SMTP server on loopback (aiosmtpd): the message arrives once, with
the right recipient, subject, body and CSV attachment; refusals, timeouts, a connection dropped
mid-message and a sender that dies mid-attempt lead to retries, never to a loss or a duplicate."""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone

import pytest
import trustme

from pacswatch.notify import cases as C
from pacswatch.notify import outbox as O
from pacswatch.notify.delivery import deliver
from pacswatch.notify.exposure import Exposure
from pacswatch.notify.render import Renderer, Sender
from pacswatch.notify.smtp import DryRunTransport, SendingDisabled, SmtpConfig, SmtpTransport
from pacswatch.notify.store import NotifyStore
from pacswatch.notify.workflow import Settings, build_message

from smtp_servers import DroppingProxy, SmtpServer

SENDER = Sender(organisation="Example CERT", from_addr="notify@example.org", reply_to="cert@example.org")
EXPOSURE = Exposure("192.0.2.10", 4242, service="dicom", product="Orthanc", product_version="1.12.1",
                    severity="critical", first_seen=datetime(2025, 3, 1, tzinfo=timezone.utc),
                    last_seen=datetime(2025, 3, 2, tzinfo=timezone.utc), studies=12, patients=5,
                    reasons=("C-FIND without credentials lists 12 studies.",))
FAST = O.Backoff(first=timedelta(seconds=30), max_attempts=5, max_permanent=2)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


def smtp(port: int, **kw) -> SmtpTransport:
    cfg = SmtpConfig(enabled=True, host="127.0.0.1", port=port, security=kw.pop("security", "none"),
                     helo="pacswatch.test", timeout=kw.pop("timeout", 2.0), **kw)
    return SmtpTransport(cfg, envelope_from=SENDER.from_addr)


def queued(engine, clock, recipient="it@example.org") -> tuple[NotifyStore, O.OutboxMessage]:
    store = NotifyStore(engine)
    case = store.create_case(*C.open_case("local:1", "Example Hospital", clock()))
    store.assign(EXPOSURE.ip, EXPOSURE.port, case.id, clock())
    msg = build_message(case, C.INITIAL, [EXPOSURE], recipient, settings=Settings(sender=SENDER),
                        renderer=Renderer(), now=clock())
    assert store.enqueue(msg) and not store.enqueue(msg)  # the key dedups a second decision
    return store, msg


DEFAULT_LIMITS = O.RateLimits()


def run(store, transport, clock, limits=DEFAULT_LIMITS, rounds=1):
    reports = []
    for _ in range(rounds):
        reports.append(deliver(store, transport, clock=clock, limits=limits, backoff=FAST))
        clock.advance(minutes=10)
    return reports


def test_arrives_once_with_recipient_subject_body_and_attachment(engine, smtp_server):
    clock = Clock()
    store, msg = queued(engine, clock)
    report = run(store, smtp(smtp_server.port), clock, rounds=3)[0]
    assert report.sent == [msg.key]
    assert len(smtp_server.received) == 1
    got = smtp_server.received[0]
    assert got.rcpt_tos == ["it@example.org"] and got.mail_from == "notify@example.org"
    email = got.message
    assert email["To"] == "it@example.org" and email["Subject"] == msg.subject
    assert email["Subject"].startswith("1 exposed medical imaging service (critical) [pacswatch case")
    assert email["Message-ID"] == f"<{msg.key}@example.org>"
    body = email.get_body(("plain",)).get_content()
    assert "192.0.2.10:4242" in body and "DicomAlwaysAllowFind" in body
    (attachment,) = list(email.iter_attachments())
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_filename().endswith(".csv")
    csv_text = attachment.get_content()
    assert csv_text.startswith("ip,port,") and "192.0.2.10,4242" in csv_text
    # the case moved to notified in the same transaction as the message became sent
    case = store.cases()[0]
    assert case.state == C.NOTIFIED and case.notified_at is not None
    assert store.message(msg.key).state == O.SENT and store.message(msg.key).attempts == 1
    history = [e["why"] for e in store.history(case.id)]
    assert any("first notice accepted" in w for w in history) and any(": sent" in w for w in history)


@pytest.mark.parametrize("where,reply", [("rcpt", "451 4.7.1 greylisted, try later"),
                                         ("data", "452 4.3.1 insufficient storage"),
                                         ("rcpt", "550 5.7.1 relay not permitted")])
def test_refusal_is_retried_then_delivered_once(engine, smtp_server, where, reply):
    clock = Clock()
    store, msg = queued(engine, clock)
    (smtp_server.handler.rcpt_replies if where == "rcpt" else smtp_server.handler.data_replies).append(reply)
    first, second, third = run(store, smtp(smtp_server.port), clock, rounds=3)
    assert first.retrying == [msg.key] and reply in first.errors[msg.key]  # as the relay wrote it, no b'...'
    assert second.sent == [msg.key] and third.sent == []
    assert len(smtp_server.received) == 1
    assert store.message(msg.key).attempts == 2


def test_permanent_refusal_gives_up_but_keeps_the_message(engine, smtp_server):
    clock = Clock()
    store, msg = queued(engine, clock)
    smtp_server.handler.rcpt_replies += ["550 5.1.1 no such user"] * 5
    reports = run(store, smtp(smtp_server.port), clock, rounds=4)
    assert reports[1].failed == [msg.key]
    kept = store.message(msg.key)
    assert kept.state == O.FAILED and kept.attempts == 2 and "550" in kept.last_error
    assert smtp_server.received == [] and store.cases()[0].state == C.NEW  # not notified: nothing arrived
    store.replace_message(O.retry_failed(kept, clock()))  # the operator fixed the address book
    smtp_server.handler.rcpt_replies.clear()
    assert run(store, smtp(smtp_server.port), clock)[0].sent == [msg.key]
    assert len(smtp_server.received) == 1


def test_relay_that_stalls_past_the_timeout(engine, smtp_server):
    clock = Clock()
    store, msg = queued(engine, clock)
    smtp_server.handler.rcpt_delays.append(3.0)  # longer than the client's 1 s timeout
    first, second = run(store, smtp(smtp_server.port, timeout=1.0), clock, rounds=2)
    assert first.retrying == [msg.key] and "timed out" in first.errors[msg.key].lower()
    assert second.sent == [msg.key]
    assert len(smtp_server.received) == 1


def test_connection_dropped_mid_message(engine, smtp_server):
    clock = Clock()
    store, msg = queued(engine, clock)
    proxy = DroppingProxy(("127.0.0.1", smtp_server.port), drops=1, after=300).start()
    try:
        first, second, third = run(store, smtp(proxy.port), clock, rounds=3)
    finally:
        proxy.stop()
    assert proxy.dropped == 1 and first.retrying == [msg.key]
    assert second.sent == [msg.key] and third.sent == []
    assert len(smtp_server.received) == 1
    assert smtp_server.received[0].message["Message-ID"] == f"<{msg.key}@example.org>"


def test_sender_dying_mid_attempt_is_resent_after_the_lease(engine, smtp_server):
    clock = Clock()
    store, msg = queued(engine, clock)
    assert store.claim(msg, clock()) is not None  # claimed, then the process "died"
    assert store.claim(msg, clock()) is None  # nobody else can take it meanwhile
    assert deliver(store, smtp(smtp_server.port), clock=clock, backoff=FAST).sent == []
    clock.advance(minutes=16)
    report = deliver(store, smtp(smtp_server.port), clock=clock, backoff=FAST)
    assert report.released == [msg.key] and report.sent == [msg.key]
    assert len(smtp_server.received) == 1


def test_starttls_and_auth(engine, tmp_path):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    server = SmtpServer(tls_context=server_ctx, users={"notify": "s3cret"}).start()
    try:
        clock = Clock()
        store, msg = queued(engine, clock)
        import os

        os.environ["PACSWATCH_TEST_SMTP_PW"] = "wrong"
        transport = smtp(server.port, security="starttls", cafile=str(cafile), username="notify",
                         password_env="PACSWATCH_TEST_SMTP_PW")
        assert run(store, transport, clock)[0].retrying == [msg.key] or store.message(msg.key).state == O.FAILED
        os.environ["PACSWATCH_TEST_SMTP_PW"] = "s3cret"
        store.replace_message(O.retry_failed(store.message(msg.key), clock()))
        clock.advance(hours=1)
        assert run(store, transport, clock)[0].sent == [msg.key]
        assert len(server.received) == 1
        # plain text to a relay without STARTTLS is refused on our side, never sent in clear
        plain = SmtpServer().start()
        try:
            store2, msg2 = queued(engine, clock, recipient="other@example.org")
            report = run(store2, smtp(plain.port, security="starttls", cafile=str(cafile)), clock)[0]
            assert "STARTTLS" in report.errors[msg2.key] and plain.received == []
        finally:
            plain.stop()
    finally:
        server.stop()
        os.environ.pop("PACSWATCH_TEST_SMTP_PW", None)


def test_rate_limits_defer_without_loss(engine, smtp_server):
    clock = Clock()
    store = NotifyStore(engine)
    keys = []
    for n in range(3):
        case = store.create_case(*C.open_case(f"local:{n}", f"Owner {n}", clock()))
        msg = build_message(case, C.INITIAL, [EXPOSURE], "abuse@example.net", settings=Settings(sender=SENDER),
                            renderer=Renderer(), now=clock())
        store.enqueue(msg)
        keys.append(msg.key)
    limits = O.RateLimits(per_recipient=2, per_recipient_window=timedelta(hours=1), global_per_window=10)
    first = deliver(store, smtp(smtp_server.port), clock=clock, limits=limits, backoff=FAST)
    assert len(first.sent) == 2 and len(first.deferred) == 1
    clock.advance(minutes=30)
    assert deliver(store, smtp(smtp_server.port), clock=clock, limits=limits, backoff=FAST).sent == []
    clock.advance(minutes=31)
    assert len(deliver(store, smtp(smtp_server.port), clock=clock, limits=limits, backoff=FAST).sent) == 1
    assert sorted(r.message["Message-ID"] for r in smtp_server.received) == sorted(f"<{k}@example.org>" for k in keys)

    global_limits = O.RateLimits(global_per_window=1, global_window=timedelta(minutes=1))
    clock.advance(minutes=2)  # the last message above is out of the global window
    case = store.create_case(*C.open_case("local:9", "Nine", clock()))
    for who in ("a@example.org", "b@example.org"):
        store.enqueue(build_message(case, C.INITIAL, [EXPOSURE], who, settings=Settings(sender=SENDER),
                                    renderer=Renderer(), now=clock()))
    report = deliver(store, smtp(smtp_server.port), clock=clock, limits=global_limits, backoff=FAST)
    assert len(report.sent) == 1 and len(report.deferred) == 1


def test_default_configuration_sends_nothing_and_dry_run_writes_eml(engine, smtp_server, tmp_path):
    with pytest.raises(SendingDisabled):
        SmtpTransport(SmtpConfig(), envelope_from="x@example.org")
    with pytest.raises(SendingDisabled):
        SmtpTransport(SmtpConfig(enabled=True), envelope_from="x@example.org")
    clock = Clock()
    store, msg = queued(engine, clock)
    dry = DryRunTransport(tmp_path / "out")
    dry.send(msg)
    dry.send(msg)  # twice: one file
    files = list((tmp_path / "out").glob("*.eml"))
    assert len(files) == 1 and files[0].read_bytes() == msg.raw
    review = files[0].with_suffix(".txt").read_bytes()  # for a person: one kind of line end, LF
    assert b"\r" not in review and review.startswith(b"From: ") and b"\n\nHello " in review
    assert smtp_server.received == []
