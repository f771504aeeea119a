"""Distributed scans: the shards of a scan's plan, the workers' heartbeats, each observation's
vantage, and one observation per endpoint and scan (what makes a redelivered shard harmless).

The constraint is on (scan_id, plan_index): a plan index is one endpoint of the scan's plan.
No version wrote two observations of one plan index in a scan; should a database hold any, the
newest row of each is kept.

Revision ID: 0008_distributed
Revises: 0007_deception
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_distributed"
down_revision = "0007_deception"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM observations WHERE plan_index IS NOT NULL AND id NOT IN "
               "(SELECT max(id) FROM observations WHERE plan_index IS NOT NULL GROUP BY scan_id, plan_index)")
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("vantage", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_observations_scan_id_plan_index"), ["scan_id", "plan_index"])
    op.create_table(
        "shards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("first_index", sa.BigInteger(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("vantage", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["scan_id"], ["scans.id"], name=op.f("fk_shards_scan_id_scans"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shards")),
        sa.UniqueConstraint("scan_id", "number", name=op.f("uq_shards_scan_id_number")),
    )
    op.create_index(op.f("ix_shards_scan_id_state"), "shards", ["scan_id", "state"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("vantage", sa.String(length=64), nullable=True),
        sa.Column("queues", sa.String(length=1000), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("tasks_done", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index(op.f("ix_shards_scan_id_state"), table_name="shards")
    op.drop_table("shards")
    with op.batch_alter_table("observations") as batch:
        batch.drop_constraint(op.f("uq_observations_scan_id_plan_index"), type_="unique")
        batch.drop_column("vantage")
