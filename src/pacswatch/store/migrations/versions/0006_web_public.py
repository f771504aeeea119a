"""The dashboard's public pages: opt-out requests waiting for (or given) their confirmation by
a known contact, and the rescans opened /verify links started.

Revision ID: 0006_web_public
Revises: 0005_dashboard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_web_public"
down_revision = "0005_dashboard"
branch_labels = None
depends_on = None

_MOMENT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("optout_requests",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("network", sa.String(length=64), nullable=False),
                    sa.Column("requester", sa.String(length=320), nullable=True),
                    sa.Column("note", sa.Text(), nullable=True),
                    sa.Column("requested_at", _MOMENT, nullable=False),
                    sa.Column("state", sa.String(length=16), nullable=False),
                    sa.Column("mailed_to", sa.JSON(), nullable=False),
                    sa.Column("confirmed_at", _MOMENT, nullable=True),
                    sa.Column("confirmed_by", sa.String(length=320), nullable=True),
                    sa.Column("optout_id", sa.Integer(), nullable=True),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_optout_requests")))
    op.create_index(op.f("ix_optout_requests_state"), "optout_requests", ["state"], unique=False)
    op.create_table("verify_checks",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("case_id", sa.Integer(), nullable=False),
                    sa.Column("requested_at", _MOMENT, nullable=False),
                    sa.Column("seed", sa.BigInteger(), nullable=False),
                    sa.Column("endpoints", sa.JSON(), nullable=False),
                    sa.Column("pid", sa.Integer(), nullable=True),
                    sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_verify_checks_case_id_cases"),
                                            ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_verify_checks")))
    op.create_index(op.f("ix_verify_checks_case_id_requested_at"), "verify_checks", ["case_id", "requested_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_verify_checks_case_id_requested_at"), table_name="verify_checks")
    op.drop_table("verify_checks")
    op.drop_index(op.f("ix_optout_requests_state"), table_name="optout_requests")
    op.drop_table("optout_requests")
