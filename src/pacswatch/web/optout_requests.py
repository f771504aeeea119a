"""Opt-out requests from the public /optout form: stored, confirmed by a link mailed to a contact
attribution already knows for the network, and only then added to the opt-out list (through
campaign.optouts.add_optout, the path of `pacswatch optout add`).

Why a known contact and not the requester's address: anyone can type a network into a public
form. Only someone who reads the mail of the network's own contact (the local contacts table,
the network's RDAP abuse desk, its security.txt) can confirm it. Contacts come from what is
stored; nothing is looked up for a request (a public form must not make the scanner send
queries), so a network we know no contact for gets none, and the analyst sees the request.

The public answer is the same whatever we know ("if we know a contact, a link was sent"):
saying "no contact known" or naming one would tell anyone which networks hold findings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from pacswatch.attribution import facts as F
from pacswatch.attribution.local import LocalOwner
from pacswatch.campaign.optouts import add_optout
from pacswatch.campaign.scope import normalize_network
from pacswatch.mailaddr import mailbox
from pacswatch.notify import tokens
from pacswatch.notify.config import Config
from pacswatch.notify.optout import mail_address
from pacswatch.notify.outbox import OutboxMessage
from pacswatch.notify.smtp import SendingDisabled, SmtpTransport, Transport
from pacswatch.notify.store import NotifyStore
from pacswatch.store.repository import Repository
from pacswatch.store.web_public_tables import optout_requests
from pacswatch.text import clean
from pacswatch.web.db import reading, writing

PENDING, CONFIRMED, NO_CONTACT = "pending", "confirmed", "no-contact"
MAX_CONTACTS = 3  # links mailed per request: the network's own contacts, not a mailing list
LINK_VALID = timedelta(days=7)
RESEND_AFTER = timedelta(hours=24)  # one mail per network per day, however often the form is sent
_SLOTS = 10  # a token's subject is request id * _SLOTS + the contact's index: who confirmed


@dataclass(frozen=True)
class KnownContact:
    address: str
    source: str  # where attribution learned it, as the analyst reads it


def _span(network: str) -> tuple[int, int, int]:
    """(version, first, last) of an address, CIDR or range as normalize_network stores it."""
    if "-" in network:
        first, last = (ipaddress.ip_address(p) for p in network.split("-", 1))
        return first.version, int(first), int(last)
    net = ipaddress.ip_network(network, strict=False)
    return net.version, int(net.network_address), int(net.broadcast_address)


def _covers(outer: tuple[int, int, int], inner: tuple[int, int, int]) -> bool:
    return outer[0] == inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2]


def _rdap_span(facts: Iterable[Mapping[str, Any]]) -> tuple[int, int, int] | None:
    for fact in facts:
        detail = fact.get("detail") or {}
        if fact.get("kind") == F.RDAP_NETWORK and detail.get("start") and detail.get("end"):
            try:
                return _span(f"{detail['start']}-{detail['end']}")
            except ValueError:
                return None
    return None


def contacts_for(network: str, owners: Iterable[LocalOwner],
                 attributions: Mapping[str, Mapping[str, Any]]) -> list[KnownContact]:
    """The contacts that vouch for the whole of `network` (pure), most trusted first:
    - a local contacts table entry whose CIDR holds the network;
    - for an attributed address inside it, the contacts learned for that address (its
      attribution's contact and escalation, the RDAP abuse address, security.txt's mailto),
      when the RDAP network of the address holds the whole requested network, or the request
      is that one address. A hospital's security.txt does not vouch for its provider's /16."""
    wanted = _span(network)
    found: list[KnownContact] = []
    for owner in owners:
        try:
            if owner.is_network and _covers(_span(owner.match), wanted):
                found += [KnownContact(c, f"local contacts table (entry {owner.id}, {owner.match})")
                          for c in owner.contacts]
        except ValueError:
            continue
    for ip in sorted(attributions):
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if not _covers(wanted, (addr.version, int(addr), int(addr))):
            continue
        row = attributions[ip]
        facts = row.get("facts") or []
        rdap = _rdap_span(facts)
        if not (rdap is not None and _covers(rdap, wanted)) and wanted != (addr.version, int(addr), int(addr)):
            continue
        if row.get("contact"):
            found.append(KnownContact(row["contact"], f"attribution of {ip} ({row.get('contact_role') or 'contact'})"))
        for fact in facts:
            value = str(fact.get("value") or "")
            if fact.get("kind") == F.RDAP_ABUSE:
                found.append(KnownContact(value, f"RDAP abuse contact of {ip}"))
            elif fact.get("kind") == F.SECURITY_TXT and value.lower().startswith("mailto:"):
                domain = (fact.get("detail") or {}).get("domain", "?")
                found.append(KnownContact(value[len("mailto:"):], f"security.txt of {domain}"))
        if row.get("escalation"):
            found.append(KnownContact(row["escalation"], f"attribution of {ip} (escalation)"))
    unique: dict[str, KnownContact] = {}
    for contact in found:
        address = mail_address(contact.address)
        if address is not None and address not in unique:
            unique[address] = KnownContact(address, contact.source)
    return list(unique.values())


ENUMERATED = 4096  # a network this small is looked up address by address; a larger one reads every attribution


def _attributions_in(store: NotifyStore, network: str) -> dict[str, dict[str, Any]]:
    """The stored attributions of addresses in `network` (a superset for a large network:
    contacts_for keeps what lies inside). Read by address for a small network, the usual request:
    every attribution of a large database takes a second to read."""
    version, first, last = _span(network)
    if last - first >= ENUMERATED:
        return dict(store.attributions())
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return store.attributions([str(make(n)) for n in range(first, last + 1)])


@dataclass(frozen=True)
class Submitted:
    request_id: int | None  # None: a request for this network was mailed less than a day ago
    mailed: int


def confirmation_mail(config: Config, *, to: str, network: str, link: str, expires: datetime,
                      now: datetime) -> bytes:
    """The mail that carries the confirmation link (plain text; headers from validated
    addresses only, as notices are built)."""
    sender = config.settings.sender
    msg = EmailMessage()
    msg["From"] = mailbox(sender.from_addr, sender.organisation)
    msg["To"] = mailbox(to)
    msg["Subject"] = f"[{sender.tag}] Confirm the opt-out of {network}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=mailbox(sender.from_addr).domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"Someone asked {sender.organisation} to stop scanning {network} and writing about it.\n\n"
        f"You receive this because you are a contact we know for that network. To confirm, open\n\n"
        f"  {link}\n\n"
        f"and press the button. The link works until {expires:%Y-%m-%d %H:%M} UTC.\n"
        "If you did not ask for this, ignore this message: nothing changes.\n\n"
        f"--\n{sender.signature}\n", charset="utf-8")
    return msg.as_bytes()


def submit(engine: Engine, config: Config, *, secret: bytes, base_url: str, network_text: str,
           requester: str, note: str, now: datetime, transport: Transport | None = None) -> Submitted:
    """Store a request and mail its links to the network's known contacts. ValueError (a reason a
    person may read) for a network that is not one. SMTP disabled: stored, mailed to no one."""
    network = normalize_network(network_text.strip())
    store = NotifyStore(engine)
    with reading(engine) as conn:
        recent = conn.execute(select(optout_requests.c.id).where(
            optout_requests.c.network == network, optout_requests.c.state == PENDING,
            optout_requests.c.requested_at > now - RESEND_AFTER)).first()
    if recent is not None:
        return Submitted(None, 0)
    contacts = contacts_for(network, store.owners(), _attributions_in(store, network))[:MAX_CONTACTS]
    with writing(engine) as conn:
        request_id = conn.execute(insert(optout_requests).returning(optout_requests.c.id), {
            "network": network, "requester": clean(requester, limit=320) or None, "note": clean(note, limit=2000) or None,
            "requested_at": now, "state": PENDING if contacts else NO_CONTACT, "mailed_to": []}).scalar_one()
    mailed = []
    expires = now + LINK_VALID
    for index, contact in enumerate(contacts):
        token = tokens.make(secret, tokens.OPTOUT, request_id * _SLOTS + index, expires)
        try:
            raw = confirmation_mail(config, to=contact.address, network=network,
                                    link=f"{base_url.rstrip('/')}/optout/confirm/{token}", expires=expires, now=now)
            result = _send(config, transport, contact.address, raw, now)
        except ValueError as exc:  # an address the mail headers refuse: the analyst reads why, not the requester
            result = f"not sent: {clean(str(exc), limit=300)}"
        mailed.append({"address": contact.address, "source": contact.source, "result": result})
    with writing(engine) as conn:
        conn.execute(update(optout_requests).where(optout_requests.c.id == request_id).values(mailed_to=mailed))
    return Submitted(request_id, sum(1 for m in mailed if m["result"] == "sent"))


def _send(config: Config, transport: Transport | None, to: str, raw: bytes, now: datetime) -> str:
    try:
        transport = transport or SmtpTransport(config.smtp, envelope_from=config.settings.sender.from_addr)
    except (SendingDisabled, ValueError) as exc:
        return f"not sent: {exc}"
    # The notify transport sends an outbox message; this one belongs to no case (id 0).
    result = transport.send(OutboxMessage("optout-confirmation", 0, "optout", 1, 1, to, "", raw, now, now))
    return "sent" if result.ok else f"not sent: {clean(result.detail, limit=300)}"


@dataclass(frozen=True)
class Pending:
    request_id: int
    network: str
    contact: str
    state: str
    optout_id: int | None
    requested_at: datetime


def opened(engine: Engine, *, secret: bytes, token: str, now: datetime) -> Pending:
    """The request a confirmation link names, and the contact it was mailed to; TokenError for a
    link that is not valid, LookupError for a request that is gone."""
    subject = tokens.read(secret, tokens.OPTOUT, token, now).subject
    request_id, index = divmod(subject, _SLOTS)
    with reading(engine) as conn:
        row = conn.execute(select(optout_requests).where(optout_requests.c.id == request_id)).mappings().first()
    if row is None or index >= len(row["mailed_to"] or []):
        raise LookupError("this opt-out request no longer exists")
    return Pending(request_id, row["network"], row["mailed_to"][index]["address"], row["state"], row["optout_id"],
                   row["requested_at"])


def confirm(engine: Engine, *, secret: bytes, token: str, now: datetime) -> Pending:
    """Add the opt-out a valid link confirms (once: a second confirmation changes nothing)."""
    pending = opened(engine, secret=secret, token=token, now=now)
    if pending.state == CONFIRMED:
        return pending
    added = add_optout(Repository(engine), pending.network, pending.contact, requested_at=pending.requested_at,
                       note=f"opt-out request {pending.request_id}, confirmed by its contact through the mailed link",
                       added_by=f"{pending.contact} (opt-out request {pending.request_id})", at=now)
    with writing(engine) as conn:
        conn.execute(update(optout_requests).where(optout_requests.c.id == pending.request_id).values(
            state=CONFIRMED, confirmed_at=now, confirmed_by=pending.contact, optout_id=added.entry))
    return Pending(pending.request_id, pending.network, pending.contact, CONFIRMED, added.entry, pending.requested_at)


def requests(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The latest requests, pending first, for the analysts' /optouts page."""
    with reading(engine) as conn:
        rows = conn.execute(select(optout_requests).order_by(
            (optout_requests.c.state == PENDING).desc(), optout_requests.c.requested_at.desc())
            .limit(limit)).mappings().all()
    return [dict(r) for r in rows]
