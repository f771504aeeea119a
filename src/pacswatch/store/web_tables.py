"""The dashboard's tables (SQLAlchemy Core), on the store's metadata; created by the migration
`0005_dashboard`.

Accounts of the people who use `pacswatch serve`, their sessions and API tokens (only hashes of
the secrets are kept), what a person decided about a finding (false positive, suppressed
until a date) with who did it, and a summary per finished scan for the overview's chart.
Nothing here comes from a scanned server but counts.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from pacswatch.store.tables import BigId, Moment, finding_events, findings, metadata

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),  # admin | analyst | viewer
    Column("password_hash", String(200), nullable=False),  # argon2id, with its parameters
    Column("created_at", Moment, nullable=False),
    Column("password_changed_at", Moment, nullable=False),
    UniqueConstraint("name"),
)

# A session cookie carries a random token; the table keeps its SHA-256, so a copy of the
# database does not hand out live sessions.
web_sessions = Table(
    "web_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Moment, nullable=False),
    Column("expires_at", Moment, nullable=False),
    Index(None, "user_id"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("label", String(100)),
    Column("created_at", Moment, nullable=False),
    Column("last_used_at", Moment),
    UniqueConstraint("token_hash"),
    Index(None, "user_id"),
)

# A person's verdict on a finding: false-positive (with the reason) or suppressed until a date.
# The latest row of a finding is its current triage; older rows are its history. The lifecycle
# (open, fixed, reopened) is the scans' and stays in findings; this is what people say about it.
finding_triage = Table(
    "finding_triage", metadata,
    Column("id", BigId, primary_key=True),
    Column("finding_id", Integer, ForeignKey("findings.id", ondelete="CASCADE"), nullable=False),
    Column("at", Moment, nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("action", String(24), nullable=False),  # false-positive | suppressed | cleared | rescan | note
    Column("until", Moment),
    Column("reason", Text),
    Index(None, "finding_id", "at"),
)

# What a finished full scan exposed (services with a severity, their studies and patients): the
# overview's chart over time. A finished scan never changes, so it is summed once, the first time
# the overview needs it, rather than over a million observations on every page view.
scan_exposure = Table(
    "scan_exposure", metadata,
    Column("scan_id", Integer, ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("services", Integer, nullable=False),
    Column("studies", BigInteger, nullable=False),
    Column("patients", BigInteger, nullable=False),
    Column("computed_at", Moment, nullable=False),
)

# Indexes the dashboard's pages need on the scans' tables (bench/web.py measured them at
# 100,000 findings): a page of findings in severity, first- or last-seen order is read from an
# index and stops when the page is full; the fixes of the last weeks and the events of the
# weekly trend are index ranges. Declared here, beside the tables that need them, so that
# store/tables.py keeps what the scans need.
DASHBOARD_INDEXES = (
    Index("ix_findings_severity", findings.c.severity),
    Index("ix_findings_first_seen", findings.c.first_seen),
    Index("ix_findings_last_seen", findings.c.last_seen),
    Index("ix_findings_fixed_at", findings.c.fixed_at),
    Index("ix_finding_events_at_kind", finding_events.c.at, finding_events.c.kind),
)

WEB_TABLES = (users, web_sessions, api_tokens, finding_triage, scan_exposure)
