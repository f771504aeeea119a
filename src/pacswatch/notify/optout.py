"""Opt-outs at notify time, as pure decisions (the store reads the list, this decides).

An owner on the opt-out list is not scanned (campaign/scope.py), and from the moment of the
opt-out nothing is sent that names one of its addresses, and nothing is sent to the contact who
asked, whatever network a later notice is about. The list is read when a pass plans its notices
and again when each message is claimed for sending, so an opt-out added between queueing and
sending still stops the message.

Addresses compare as the scan's blocklist compares them (an IPv4-mapped IPv6 address is its
IPv4 address); contacts compare as e-mail addresses, case-insensitively, display names dropped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import parseaddr
from typing import Any

from pacswatch.targets import BlockEntry, Blocklist


def mail_address(text: str | None) -> str | None:
    """The e-mail address in `text` ("SOC <soc@example.org>", " Soc@Example.org "), lower-cased;
    None when `text` is not one (an opt-out's contact may be a ticket number or a name)."""
    if not text:
        return None
    address = parseaddr(text)[1].strip().lower()
    return address if "@" in address.strip("@") else None


@dataclass(frozen=True)
class OptOuts:
    """The opt-out list as notify time asks it: is this address opted out, is this recipient."""

    networks: Blocklist
    contacts: Mapping[str, str]  # e-mail address -> the entry that names it

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> OptOuts:
        # The campaign's own matcher (Repository.close_opted_out uses it too), so a finding the
        # store closes as opted-out and an address a notice may not name are the same set.
        from pacswatch.store.repository import networks_matcher

        rows = list(rows)
        spans = networks_matcher([r["cidr"] for r in rows]).entries  # one per row, in order
        entries = [BlockEntry(s.span, f"opt-out entry {r['id']} ({r['cidr']})") for s, r in zip(spans, rows)]
        contacts: dict[str, str] = {}
        for r in rows:
            address = mail_address(r.get("contact"))
            if address is not None:
                contacts.setdefault(address, f"opt-out entry {r['id']}")
        return cls(Blocklist(entries), contacts)

    def __bool__(self) -> bool:
        return bool(len(self.networks) or self.contacts)

    def address_reason(self, ip: str) -> str | None:
        """Why `ip` may not be named in a notice, or None."""
        return self.networks.reason_for(ip)

    def recipient_reason(self, recipient: str | None) -> str | None:
        """Why `recipient` may not be mailed, or None."""
        address = mail_address(recipient)
        entry = self.contacts.get(address) if address else None
        return f"{address} asked not to be contacted ({entry})" if entry else None

    def veto(self, recipient: str | None, ips: Iterable[str]) -> str | None:
        """Why a message to `recipient` naming `ips` must not go, or None."""
        reason = self.recipient_reason(recipient)
        if reason is not None:
            return reason
        for ip in ips:
            reason = self.address_reason(ip)
            if reason is not None:
                return f"it names {ip}, on the opt-out list ({reason})"
        return None


def named_addresses(raw: bytes) -> list[str] | None:
    """The addresses a notice names: the `ip` column of its CSV attachment, which lists the
    same endpoints as its body (render.py builds both from one list). None when the message
    has no such attachment: the caller must then assume the worst."""
    message = message_from_bytes(raw, policy=policy.default)
    for part in message.walk():
        if part.get_content_type() != "text/csv":
            continue
        content = part.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "ip" not in reader.fieldnames:
            continue
        return [row["ip"].lstrip("'") for row in reader if row.get("ip")]
    return None
