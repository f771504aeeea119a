"""The tables of attribution and notification (SQLAlchemy Core), on the store's metadata.

Created by the migration `0002_notify`; store/schema.py names them with the tables of
store/tables.py: what compares the migrations with the whole schema takes `metadata` from there.

Nothing here holds data from a returned data set: owners, contacts and facts are about
networks and the people who run them; messages hold notices rendered from counts and protocol
facts only (notify/exposure.py is the allowlist).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text

from pacswatch.store.tables import BigId, Moment, metadata

# The local contacts table (`pacswatch owners add`): CIDR or domain -> owner and contacts.
owners = Table(
    "owners", metadata,
    Column("id", Integer, primary_key=True),
    Column("match", String(255), nullable=False),  # a CIDR or a domain
    Column("name", String(200), nullable=False),
    Column("contacts", JSON, nullable=False),  # e-mail addresses, first preferred
    Column("escalation", JSON, nullable=False),  # who to tell when the owner does not act
    Column("language", String(16)),
    Column("notes", Text),
    Column("added_at", Moment, nullable=False),
    Column("added_by", String(200)),
    Index(None, "match"),
)

# Cache of facts with expiry (attribution/cache.py), by subject (address, domain, AS) and group.
attribution_facts = Table(
    "attribution_facts", metadata,
    Column("subject", String(255), primary_key=True),
    Column("grp", String(32), primary_key=True),
    Column("facts", JSON, nullable=False),
    Column("stored_at", Moment, nullable=False),
    Column("expires_at", Moment, nullable=False),
)

# The latest decision per address, with the facts it was made from (sources and times).
attributions = Table(
    "attributions", metadata,
    Column("ip", String(45), primary_key=True),
    Column("owner_key", String(300), nullable=False),
    Column("owner_name", String(300), nullable=False),
    Column("contact", String(320)),
    Column("contact_role", String(32)),
    Column("escalation", String(320)),
    Column("confidence", Float, nullable=False),
    Column("language", String(16)),
    Column("cloud", String(100)),
    Column("reasons", JSON, nullable=False),
    Column("facts", JSON, nullable=False),
    Column("facts_digest", String(32), nullable=False),
    Column("decided_at", Moment, nullable=False),
    Index(None, "owner_key"),
)

cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True),
    Column("owner_key", String(300), nullable=False),
    Column("owner_name", String(300), nullable=False),
    Column("state", String(16), nullable=False),
    Column("round", Integer, nullable=False, default=1),
    Column("opened_at", Moment, nullable=False),
    Column("updated_at", Moment, nullable=False),
    Column("notified_at", Moment),
    Column("last_notice_at", Moment),
    Column("followups", Integer, nullable=False, default=0),
    Column("escalated_at", Moment),
    Column("acknowledged_at", Moment),
    Column("fixed_at", Moment),
    Column("closed_at", Moment),
    Index(None, "owner_key"),
    Index(None, "state"),
)

# Which case a service belongs to: one case at a time per endpoint.
case_services = Table(
    "case_services", metadata,
    Column("ip", String(45), primary_key=True),
    Column("port", Integer, primary_key=True, autoincrement=False),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("added_at", Moment, nullable=False),
    Index(None, "case_id"),
)

# The history of a case: transitions (from_state -> to_state) and messages, each explained.
case_events = Table(
    "case_events", metadata,
    Column("id", BigId, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("at", Moment, nullable=False),
    Column("kind", String(16), nullable=False),  # transition | message | note
    Column("from_state", String(16)),
    Column("to_state", String(16)),
    Column("why", Text, nullable=False),
    Index(None, "case_id"),
)

outbox = Table(
    "outbox", metadata,
    Column("key", String(64), primary_key=True),  # idempotency key (notify/outbox.py)
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("raw", LargeBinary, nullable=False),  # the RFC 5322 message, exactly as it is sent
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Moment, nullable=False),
    Column("next_attempt_at", Moment, nullable=False),
    Column("claimed_at", Moment),
    Column("sent_at", Moment),
    Column("last_error", Text),
    Column("response", Text),
    Index(None, "state", "next_attempt_at"),
    Index(None, "recipient", "sent_at"),
    Index(None, "case_id"),
)

NOTIFY_TABLES = (owners, attribution_facts, attributions, cases, case_services, case_events, outbox)
