"""Distributed scans planned once: the inputs workers rebuild a scan's plan from (scan_inputs),
a lease on each running shard, and the vantages that have seen each finding.

`scan_inputs` holds what the scan command read (targets as resolved, --exclude and --scope
text, the rescan policy, who attributes), so no worker needs the command's files. A shard's
lease (owner, time) is renewed while it runs: a second delivery finds it fresh and does not
probe. `findings.seen_from`: a miss counts only from a vantage that saw the finding exposed;
NULL for findings stored before (every miss counts, as it did).

Revision ID: 0010_distributed_plan
Revises: 0009_mark_reason
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_distributed_plan"
down_revision = "0009_mark_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_inputs",
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("targets", sa.Text(), nullable=False),
        sa.Column("exclude", sa.JSON(), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("attribute", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_scan_inputs_scan_id_scans"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scan_id", name=op.f("pk_scan_inputs")),
    )
    with op.batch_alter_table("shards") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("seen_from", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("seen_from")
    with op.batch_alter_table("shards") as batch:
        batch.drop_column("lease_at")
        batch.drop_column("lease_owner")
    op.drop_table("scan_inputs")
