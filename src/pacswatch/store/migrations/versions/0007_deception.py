"""findings: the deception verdict of the latest look, and an analyst's override.

deception_verdict / deception_confidence copy the record's `deception` (deception.py) as each
look updates the finding; deception_override ('real' or 'honeypot') is an analyst's decision
(`pacswatch findings mark`), with its reason, who and when, and wins over the signals. Nullable
columns: every existing finding stays valid, with no verdict and no override.

Revision ID: 0007_deception
Revises: 0006_web_public
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_deception"
down_revision = "0006_web_public"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("deception_verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("deception_confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("deception_override", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("override_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("override_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("override_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        for name in ("override_at", "override_by", "override_reason", "deception_override",
                     "deception_confidence", "deception_verdict"):
            batch.drop_column(name)
