"""The tables of the dashboard's public pages (SQLAlchemy Core), on the store's metadata.

Created by the migration `0006_web_public`; store/schema.py names them.

Nothing here holds data from a returned data set: an opt-out request holds a network, the
address its confirmation was mailed to and what the requester typed (cleaned); a verify check
holds a case id and the scan that looked at its services again.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from pacswatch.store.tables import Moment, metadata

# /optout: a request, confirmed by a link mailed to a contact attribution knows for the network.
optout_requests = Table(
    "optout_requests", metadata,
    Column("id", Integer, primary_key=True),
    Column("network", String(64), nullable=False),  # as normalize_network stores it
    Column("requester", String(320)),  # what the form's e-mail field held (cleaned), for the analyst
    Column("note", Text),  # the requester's words (cleaned)
    Column("requested_at", Moment, nullable=False),
    Column("state", String(16), nullable=False),  # pending | confirmed | no-contact
    Column("mailed_to", JSON, nullable=False),  # [{"address", "source", "result"}]
    Column("confirmed_at", Moment),
    Column("confirmed_by", String(320)),  # the contact whose link was opened
    Column("optout_id", Integer),  # the opt-out entry it became
    Index(None, "state"),
)

# /verify/{token}: each opening that started a rescan of a case's services (one per case at a
# time: the link is public, so it must not start a scan per click).
verify_checks = Table(
    "verify_checks", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", Integer, ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("requested_at", Moment, nullable=False),
    Column("seed", BigInteger, nullable=False),  # the rescan's seed: how its scan row is found
    Column("endpoints", JSON, nullable=False),  # ["ip:port", ...] asked to be looked at
    Column("pid", Integer),
    Index(None, "case_id", "requested_at"),
)

WEB_PUBLIC_TABLES = (optout_requests, verify_checks)
