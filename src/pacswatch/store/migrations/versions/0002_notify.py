"""Attribution and notification: the local contacts table (owners), the facts cache, the latest
attribution per address, cases with their services and history, and the outbox.

Written out table by table, like 0001, so that later changes to notify_tables.py never change
what this revision does to a database.

Revision ID: 0002_notify
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Registers the notify tables on the store's metadata wherever the migrations are loaded, so that
# comparing the migrated schema with `metadata` sees them (see notify_tables.py).
import pacswatch.store.notify_tables  # noqa: F401,E402

revision = "0002_notify"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('attribution_facts',
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('grp', sa.String(length=32), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('subject', 'grp', name=op.f('pk_attribution_facts'))
    )
    op.create_table('attributions',
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('owner_key', sa.String(length=300), nullable=False),
    sa.Column('owner_name', sa.String(length=300), nullable=False),
    sa.Column('contact', sa.String(length=320), nullable=True),
    sa.Column('contact_role', sa.String(length=32), nullable=True),
    sa.Column('escalation', sa.String(length=320), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('cloud', sa.String(length=100), nullable=True),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('facts_digest', sa.String(length=32), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ip', name=op.f('pk_attributions'))
    )
    op.create_index(op.f('ix_attributions_owner_key'), 'attributions', ['owner_key'], unique=False)
    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_key', sa.String(length=300), nullable=False),
    sa.Column('owner_name', sa.String(length=300), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_notice_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('followups', sa.Integer(), nullable=False),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fixed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases'))
    )
    op.create_index(op.f('ix_cases_owner_key'), 'cases', ['owner_key'], unique=False)
    op.create_index(op.f('ix_cases_state'), 'cases', ['state'], unique=False)
    op.create_table('owners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('match', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('contacts', sa.JSON(), nullable=False),
    sa.Column('escalation', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_owners'))
    )
    op.create_index(op.f('ix_owners_match'), 'owners', ['match'], unique=False)
    op.create_table('case_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=True),
    sa.Column('why', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_events_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_events'))
    )
    op.create_index(op.f('ix_case_events_case_id'), 'case_events', ['case_id'], unique=False)
    op.create_table('case_services',
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('port', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_services_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ip', 'port', name=op.f('pk_case_services'))
    )
    op.create_index(op.f('ix_case_services_case_id'), 'case_services', ['case_id'], unique=False)
    op.create_table('outbox',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('response', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_outbox_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_outbox'))
    )
    op.create_index(op.f('ix_outbox_case_id'), 'outbox', ['case_id'], unique=False)
    op.create_index(op.f('ix_outbox_recipient_sent_at'), 'outbox', ['recipient', 'sent_at'], unique=False)
    op.create_index(op.f('ix_outbox_state_next_attempt_at'), 'outbox', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outbox_state_next_attempt_at'), table_name='outbox')
    op.drop_index(op.f('ix_outbox_recipient_sent_at'), table_name='outbox')
    op.drop_index(op.f('ix_outbox_case_id'), table_name='outbox')
    op.drop_table('outbox')
    op.drop_index(op.f('ix_case_services_case_id'), table_name='case_services')
    op.drop_table('case_services')
    op.drop_index(op.f('ix_case_events_case_id'), table_name='case_events')
    op.drop_table('case_events')
    op.drop_index(op.f('ix_owners_match'), table_name='owners')
    op.drop_table('owners')
    op.drop_index(op.f('ix_cases_state'), table_name='cases')
    op.drop_index(op.f('ix_cases_owner_key'), table_name='cases')
    op.drop_table('cases')
    op.drop_index(op.f('ix_attributions_owner_key'), table_name='attributions')
    op.drop_table('attributions')
    op.drop_table('attribution_facts')
