"""Opt-out requests from the public form (web/optout_requests.py): which known contacts vouch for
a network (pure), one mail per network a day, the confirmation link adds the entry once, and a
link for one request or purpose confirms nothing else. The mail goes through a recording
transport here (the SMTP transport's interface); the browser test sends it through aiosmtpd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pacswatch.attribution.local import LocalOwner
from pacswatch.notify import tokens
from pacswatch.notify.config import Config
from pacswatch.notify.outbox import SendResult
from pacswatch.store.repository import Repository
from pacswatch.web import optout_requests as R

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECRET = b"o" * 32


def _rdap(start: str, end: str) -> dict:
    return {"kind": "rdap.network", "value": "NET", "detail": {"start": start, "end": end}}


ATTRIBUTIONS = {
    "198.51.100.7": {"contact": "SOC@Hospital.example", "contact_role": "security.txt", "escalation": None,
                     "facts": [_rdap("198.51.100.0", "198.51.100.255"),
                               {"kind": "rdap.abuse", "value": "abuse@isp.example"},
                               {"kind": "security.txt", "value": "mailto:soc@hospital.example",
                                "detail": {"domain": "hospital.example"}}]},
    "203.0.113.9": {"contact": "it@clinic.example", "contact_role": "owner", "escalation": None, "facts": []},
    "192.0.2.5": {"contact": "not an address", "contact_role": "abuse", "escalation": None,
                  "facts": [_rdap("192.0.2.0", "192.0.2.255")]},
}


def test_contacts_vouch_only_for_networks_they_cover():
    local = [LocalOwner("10.20.0.0/16", "Hospital", ("noc@hospital.example", "soc@hospital.example"), id=3)]
    assert [c.address for c in R.contacts_for("10.20.5.0/24", local, {})] == ["noc@hospital.example",
                                                                              "soc@hospital.example"]
    assert R.contacts_for("10.0.0.0/8", local, {}) == []  # the /16's contacts do not speak for the /8
    # An address's contacts speak for its RDAP network, deduplicated and lower-cased.
    found = R.contacts_for("198.51.100.0/25", [], ATTRIBUTIONS)
    assert [c.address for c in found] == ["soc@hospital.example", "abuse@isp.example"]
    assert "security.txt" in found[0].source or "attribution" in found[0].source
    assert R.contacts_for("198.51.0.0/16", [], ATTRIBUTIONS) == []  # larger than its RDAP network
    # Without an RDAP network, only for that one address.
    assert [c.address for c in R.contacts_for("203.0.113.9", [], ATTRIBUTIONS)] == ["it@clinic.example"]
    assert R.contacts_for("203.0.113.0/24", [], ATTRIBUTIONS) == []
    assert R.contacts_for("192.0.2.0/24", [], ATTRIBUTIONS) == []  # "not an address" is no contact


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, message) -> SendResult:
        self.sent.append((message.recipient, message.raw))
        return SendResult(True, detail="250 accepted")


@pytest.fixture
def engine(database_url):
    """SQLite, and a real PostgreSQL on loopback (tests/conftest.py)."""
    from pacswatch.notify.store import NotifyStore

    repo = Repository.open(database_url)
    NotifyStore(repo.engine).add_owner(LocalOwner("10.20.0.0/16", "Hospital", ("noc@hospital.example",)), NOW)
    yield repo.engine
    repo.close()


def _submit(engine, transport, network="10.20.5.0/24", now=NOW):
    config = Config()  # the sender's defaults; the transport is the recorder
    return R.submit(engine, config, secret=SECRET, base_url="http://127.0.0.1:1", network_text=network,
                    requester="x@example.net\r\nBcc: y@example.net", note="<b>please</b>", now=now,
                    transport=transport)


def test_a_request_mails_the_known_contact_once_a_day_and_confirms_once(engine):
    transport = Recorder()
    first = _submit(engine, transport)
    assert first.request_id is not None and first.mailed == 1
    (to, raw), = transport.sent
    assert to == "noc@hospital.example"
    text = raw.decode()
    assert "Bcc" not in text.split("\n\n", 1)[0]  # the requester's words never reach a header
    link = next(w for w in text.split() if "/optout/confirm/" in w)
    token = link.rsplit("/", 1)[1]
    # The same network again within a day: stored nothing new, mailed no one.
    assert _submit(engine, transport, now=NOW + timedelta(hours=2)).request_id is None
    assert len(transport.sent) == 1

    pending = R.opened(engine, secret=SECRET, token=token, now=NOW)
    assert (pending.network, pending.contact, pending.state) == ("10.20.5.0/24", "noc@hospital.example", "pending")
    assert Repository(engine).optouts() == []
    done = R.confirm(engine, secret=SECRET, token=token, now=NOW + timedelta(minutes=5))
    again = R.confirm(engine, secret=SECRET, token=token, now=NOW + timedelta(minutes=6))
    assert done.state == again.state == "confirmed" and done.optout_id == again.optout_id
    (entry,) = Repository(engine).optouts()
    assert (entry["cidr"], entry["contact"]) == ("10.20.5.0/24", "noc@hospital.example")
    assert entry["added_by"] == f"noc@hospital.example (opt-out request {first.request_id})"
    (row,) = R.requests(engine)
    assert row["requester"] == "x@example.net\\x0d\\x0aBcc: y@example.net"  # cleaned where it entered


def test_a_link_is_refused_when_expired_forged_or_for_another_purpose(engine):
    transport = Recorder()
    _submit(engine, transport)
    token = next(w for w in transport.sent[0][1].decode().split() if "/optout/confirm/" in w).rsplit("/", 1)[1]
    with pytest.raises(tokens.TokenError, match="expired"):
        R.opened(engine, secret=SECRET, token=token, now=NOW + R.LINK_VALID)
    subject = int(token.split(".")[0])
    verify = tokens.make(SECRET, tokens.VERIFY, subject, NOW + timedelta(days=1))
    with pytest.raises(tokens.TokenError):
        R.confirm(engine, secret=SECRET, token=verify, now=NOW)
    # Signed, but naming a contact slot the request never mailed.
    other = tokens.make(SECRET, tokens.OPTOUT, subject + 1, NOW + timedelta(days=1))
    with pytest.raises(LookupError):
        R.confirm(engine, secret=SECRET, token=other, now=NOW)
    assert Repository(engine).optouts() == []


def test_a_network_without_a_known_contact_is_stored_for_the_analyst(engine):
    transport = Recorder()
    result = _submit(engine, transport, network="172.16.0.0/24")
    assert result.request_id is not None and result.mailed == 0 and transport.sent == []
    assert [r["state"] for r in R.requests(engine)] == ["no-contact"]
    with pytest.raises(ValueError):
        _submit(engine, transport, network="not a network")
