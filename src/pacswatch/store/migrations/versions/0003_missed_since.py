"""findings.missed_since: when a scan first missed an active finding.

One miss no longer closes a finding (a lab down for a scan marked critical findings fixed): it
stays open with missed_since set until a second miss at least `confirm_fixed_after` later
closes it, or a sighting clears it (campaign/lifecycle.py). Adding a nullable column keeps every
existing row valid: no finding of an older database is half way through a confirmation.

Revision ID: 0003_missed_since
Revises: 0002_notify
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_missed_since"
down_revision = "0002_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("missed_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("missed_since")
