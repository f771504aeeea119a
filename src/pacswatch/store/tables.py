"""The database tables (SQLAlchemy Core). Migrations in `migrations/versions` create these; a test
fails when the two disagree (tests/store/test_store_schema.py).

No column may hold a value taken from a returned data set (docs/design.md, first rule): observations
keep the record's JSON, which carries counts and protocol facts only, and the indexed columns
are copies of record fields.
"""

from __future__ import annotations

import json

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)


class RawJson(str):
    """JSON text passed to a JSON column as is (see json_dumps), so a record is serialized once,
    by pydantic, rather than dumped to a dict and serialized again."""


# What json.dumps(value, separators=(",", ":")) builds on every call; an encoder keeps no state
# between calls, so one serves every thread.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def json_dumps(value: object) -> str:
    """The engines' JSON serializer: RawJson passes through, the rest is compact JSON."""
    return str(value) if isinstance(value, RawJson) else _COMPACT.encode(value)


# Named constraints, so that Alembic can alter them later (SQLite batch mode needs the names).
# notify_tables.py adds its tables to this metadata too; store/schema.py names them all.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
})

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias); PostgreSQL gets 64 bits,
# because observations are append-only and a busy installation writes millions a day.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Moment = DateTime(timezone=True)  # always UTC; SQLite keeps no zone, the repository adds it back

scans = Table(
    "scans", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # scan | rescan
    Column("status", String(16), nullable=False),  # running | interrupted | finished | failed
    Column("operator", String(200)),  # user@host that ran it: scans are answerable
    Column("command", Text),
    Column("parameters", JSON, nullable=False),  # all that rebuilds the plan and the probe options
    Column("seed", BigInteger, nullable=False),
    Column("plan_fingerprint", String(64), nullable=False),
    Column("targets_key", String(64), nullable=False),  # targets + ports without the seed
    Column("plan_size", BigInteger, nullable=False),
    Column("done", BigInteger, nullable=False, default=0),
    Column("counts", JSON, nullable=False),  # records by status
    Column("created_at", Moment, nullable=False),
    Column("updated_at", Moment, nullable=False),  # the writer's heartbeat
    Column("finished_at", Moment),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("version", String(32)),
    Index(None, "targets_key", "id"),
)

# Completed work as merged index intervals: workers take plan indexes in order, so the set stays
# about `concurrency` intervals long however large the scan (docs/design.md: resume from the seed plus
# the index of completed work).
scan_work = Table(
    "scan_work", metadata,
    Column("scan_id", Integer, ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True),
    Column("first_index", BigInteger, primary_key=True, autoincrement=False),
    Column("last_index", BigInteger, nullable=False),
)

observations = Table(
    "observations", metadata,
    Column("id", BigId, primary_key=True),
    Column("scan_id", Integer, ForeignKey("scans.id"), nullable=False),
    Column("plan_index", BigInteger),
    Column("ip", String(45), nullable=False),
    Column("port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("status", String(24), nullable=False),
    Column("service", String(8)),
    Column("severity", String(8)),
    Column("product", String(128)),
    Column("product_version", String(64)),
    Column("studies", BigInteger),
    Column("patients", BigInteger),
    Column("scanned_at", Moment, nullable=False),
    Column("record", JSON, nullable=False),
    # Where the look was made from (a distributed scan's worker vantage); NULL: this machine.
    Column("vantage", String(64)),
    Index(None, "ip", "port", "scanned_at"),
    Index(None, "scan_id"),
    # One look per endpoint and scan (a plan index is one endpoint of the scan's plan): a shard
    # written twice (a redelivered task) cannot add a second one. Repository.ingest skips what
    # a shard stored already; this makes a slip an error. Records without an index (tests, and
    # imports of records) are not constrained: NULLs are distinct.
    UniqueConstraint("scan_id", "plan_index"),
)

services = Table(
    "services", metadata,
    Column("id", Integer, primary_key=True),
    Column("ip", String(45), nullable=False),
    Column("port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("service", String(8)),
    Column("product", String(128)),
    Column("product_version", String(64)),
    Column("status", String(24), nullable=False),
    Column("severity", String(8)),
    Column("studies", BigInteger),
    Column("patients", BigInteger),
    Column("first_seen", Moment, nullable=False),
    Column("last_seen", Moment, nullable=False),  # last time it answered as a service
    Column("last_checked", Moment, nullable=False),  # last observation, whatever it said
    Column("last_scan_id", Integer, ForeignKey("scans.id")),
    Column("last_observation_id", BigInteger),
    Column("next_due", Moment, nullable=False),
    UniqueConstraint("ip", "port"),
    Index(None, "next_due"),
)

findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True),
    Column("ip", String(45), nullable=False),
    Column("port", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open | fixed | reopened | opted-out
    Column("severity", String(8), nullable=False),  # the latest seen
    Column("first_seen", Moment, nullable=False),
    Column("last_seen", Moment, nullable=False),
    Column("fixed_at", Moment),  # when it was closed: fixed, or opted out
    # Active but missed by a scan since then: a second miss `confirm_fixed_after` later fixes it
    # (findings/lifecycle.py), a sighting clears it.
    Column("missed_since", Moment),
    Column("reopened_at", Moment),
    Column("reopen_count", Integer, nullable=False, default=0),
    Column("reasons", JSON, nullable=False),
    Column("last_observation_id", BigInteger),
    # The latest look's deception verdict (deception.py) and an analyst's override of it
    # ('real' | 'honeypot', `findings mark`), which wins; migration 0007.
    Column("deception_verdict", String(16)),
    Column("deception_confidence", Float),
    Column("deception_override", String(16)),
    Column("override_reason", Text),
    Column("override_by", String(200)),
    Column("override_at", Moment),
    # The vantages that have seen it exposed, sorted and comma-separated ("" for a scan that
    # names none; migration 0010): a miss counts only from one of them (findings/lifecycle.py,
    # vantage flapping). None: older than that, every miss counts.
    Column("seen_from", String(1000)),
    UniqueConstraint("ip", "port"),
    Index(None, "status", "severity"),
)

# The lifecycle as it happened: new, severity, fixed, reopened, opted-out (no scan, no
# observation: the owner's request closed it); the severity history of a finding is its rows here.
finding_events = Table(
    "finding_events", metadata,
    Column("id", BigId, primary_key=True),
    Column("finding_id", Integer, ForeignKey("findings.id", ondelete="CASCADE"), nullable=False),
    Column("scan_id", Integer, ForeignKey("scans.id")),
    Column("at", Moment, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("old_severity", String(8)),
    Column("new_severity", String(8)),
    Column("observation_id", BigInteger),
    # An analyst's mark (kind marked-*): who and why, as given (cleaned when shown).
    Column("marked_by", String(200)),
    Column("reason", Text),
    Index(None, "scan_id"),
    Index(None, "finding_id"),
)

optouts = Table(
    "optouts", metadata,
    Column("id", Integer, primary_key=True),
    Column("cidr", String(64), nullable=False),
    Column("contact", String(320), nullable=False),  # who asked: an owner, not a patient
    Column("requested_at", Moment, nullable=False),
    Column("added_at", Moment, nullable=False),
    Column("added_by", String(200)),
    Column("note", Text),
)

scope_entries = Table(
    "scope_entries", metadata,
    Column("id", Integer, primary_key=True),
    Column("cidr", String(64), nullable=False),
    Column("note", Text),
    Column("added_at", Moment, nullable=False),
    Column("added_by", String(200)),
)

# Small named values of this installation (JSON), e.g. "rescan_policy": the intervals that
# scheduled the services' next looks, so that `run` knows when it is given others.
settings = Table(
    "settings", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", Moment, nullable=False),
)

# A distributed scan's plan cut into shards (distributed/shards.py): plan indexes
# [first_index, last_index] of scan `scan_id`, one Celery task each. `tries` counts the workers
# that started it: one that keeps killing workers is `failed` after a few, its endpoints listed.
shards = Table(
    "shards", metadata,
    Column("id", Integer, primary_key=True),
    Column("scan_id", Integer, ForeignKey("scans.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("first_index", BigInteger, nullable=False),
    Column("last_index", BigInteger, nullable=False),
    Column("queue", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # queued | running | done | failed
    Column("tries", Integer, nullable=False, default=0),
    Column("worker", String(255)),  # the Celery node that last started it
    Column("vantage", String(64)),
    Column("error", Text),
    Column("updated_at", Moment, nullable=False),
    # The lease of the worker process running it (migration 0010): renewed every few seconds;
    # a second delivery of the shard does not probe it while the lease is fresh.
    Column("lease_owner", String(255)),
    Column("lease_at", Moment),
    UniqueConstraint("scan_id", "number"),
    Index(None, "scan_id", "state"),
)

# What a distributed scan's workers rebuild its plan and lifecycle from, read once by the scan
# command (migration 0010): the targets as resolved there (campaign/frozen.py's text), the
# --exclude and --scope files' text with their names, the rescan policy (confirm-fixed-after
# included) and who looks up owners when it ends ('worker', 'command' or None). Workers need
# no file of the command's machine and resolve no name.
scan_inputs = Table(
    "scan_inputs", metadata,
    Column("scan_id", Integer, ForeignKey("scans.id", ondelete="CASCADE"), primary_key=True),
    Column("targets", Text, nullable=False),
    Column("exclude", JSON, nullable=False),  # [[name, text], ...]
    Column("scope", JSON),  # [name, text] or null
    Column("policy", JSON, nullable=False),  # RescanPolicy.to_json()
    Column("attribute", String(16)),
)

# Distributed workers as they report themselves (`pacswatch workers`): a heartbeat every few
# seconds; one silent for three heartbeats is not live (its share of the rate goes to the others).
workers = Table(
    "workers", metadata,
    Column("name", String(255), primary_key=True),  # the Celery node name, e.g. pacswatch@host
    Column("vantage", String(64)),
    Column("queues", String(1000), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("tasks_done", Integer, nullable=False, default=0),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("started_at", Moment, nullable=False),
    Column("last_heartbeat", Moment, nullable=False),
)
