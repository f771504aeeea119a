"""settings: small named values this installation keeps, such as the rescan intervals that
scheduled its services (`pacswatch run` re-plans every service when it is given others).

Revision ID: 0004_settings
Revises: 0003_missed_since
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_settings"
down_revision = "0003_missed_since"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("settings",
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("value", sa.JSON(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("name", name=op.f("pk_settings")))


def downgrade() -> None:
    op.drop_table("settings")
