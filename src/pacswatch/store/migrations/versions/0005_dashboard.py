"""The dashboard (`pacswatch serve`): users, their sessions and API tokens, people's triage of
findings (false positive, suppressed until a date), and the indexes the dashboard's pages need
to stay fast on a large database (bench/web.py).

Revision ID: 0005_dashboard
Revises: 0004_settings
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_dashboard"
down_revision = "0004_settings"
branch_labels = None
depends_on = None

_MOMENT = sa.DateTime(timezone=True)
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table("users",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("role", sa.String(length=16), nullable=False),
                    sa.Column("password_hash", sa.String(length=200), nullable=False),
                    sa.Column("created_at", _MOMENT, nullable=False),
                    sa.Column("password_changed_at", _MOMENT, nullable=False),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
                    sa.UniqueConstraint("name", name=op.f("uq_users_name")))
    op.create_table("web_sessions",
                    sa.Column("token_hash", sa.String(length=64), nullable=False),
                    sa.Column("user_id", sa.Integer(), nullable=False),
                    sa.Column("created_at", _MOMENT, nullable=False),
                    sa.Column("expires_at", _MOMENT, nullable=False),
                    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"),
                                            ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")))
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_table("api_tokens",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("token_hash", sa.String(length=64), nullable=False),
                    sa.Column("user_id", sa.Integer(), nullable=False),
                    sa.Column("label", sa.String(length=100), nullable=True),
                    sa.Column("created_at", _MOMENT, nullable=False),
                    sa.Column("last_used_at", _MOMENT, nullable=True),
                    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"),
                                            ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
                    sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")))
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table("finding_triage",
                    sa.Column("id", _BIG_ID, nullable=False),
                    sa.Column("finding_id", sa.Integer(), nullable=False),
                    sa.Column("at", _MOMENT, nullable=False),
                    sa.Column("user_name", sa.String(length=64), nullable=False),
                    sa.Column("action", sa.String(length=24), nullable=False),
                    sa.Column("until", _MOMENT, nullable=True),
                    sa.Column("reason", sa.Text(), nullable=True),
                    sa.ForeignKeyConstraint(["finding_id"], ["findings.id"],
                                            name=op.f("fk_finding_triage_finding_id_findings"), ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_triage")))
    op.create_index(op.f("ix_finding_triage_finding_id_at"), "finding_triage", ["finding_id", "at"])
    op.create_table("scan_exposure",
                    sa.Column("scan_id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("services", sa.Integer(), nullable=False),
                    sa.Column("studies", sa.BigInteger(), nullable=False),
                    sa.Column("patients", sa.BigInteger(), nullable=False),
                    sa.Column("computed_at", _MOMENT, nullable=False),
                    sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_scan_exposure_scan_id_scans"),
                                            ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_exposure")))


    op.create_index(op.f("ix_findings_severity"), "findings", ["severity"])
    op.create_index(op.f("ix_findings_first_seen"), "findings", ["first_seen"])
    op.create_index(op.f("ix_findings_last_seen"), "findings", ["last_seen"])
    op.create_index(op.f("ix_findings_fixed_at"), "findings", ["fixed_at"])
    op.create_index(op.f("ix_finding_events_at_kind"), "finding_events", ["at", "kind"])


def downgrade() -> None:
    for table, name in (("finding_events", "ix_finding_events_at_kind"), ("findings", "ix_findings_fixed_at"),
                        ("findings", "ix_findings_last_seen"), ("findings", "ix_findings_first_seen"),
                        ("findings", "ix_findings_severity")):
        op.drop_index(op.f(name), table_name=table)
    op.drop_table("scan_exposure")
    op.drop_table("finding_triage")
    op.drop_table("api_tokens")
    op.drop_table("web_sessions")
    op.drop_table("users")
