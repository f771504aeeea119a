"""finding_events: who made an analyst's mark and why, on the event itself.

`pacswatch findings mark` stores its decision on the finding (override_reason, override_by),
which the next mark overwrites; the event keeps each mark's own author and reason, so that
`pacswatch history` says "marked real by NAME: REASON" for every one. Nullable: the other
events, and marks made before this migration, have none.

Revision ID: 0009_mark_reason
Revises: 0008_distributed
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_mark_reason"
down_revision = "0008_distributed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("finding_events") as batch:
        batch.add_column(sa.Column("marked_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("finding_events") as batch:
        batch.drop_column("reason")
        batch.drop_column("marked_by")
