"""The first schema: scans, completed work, observations, services, findings and their events,
opt-outs and scope.

Written out table by table (not `metadata.create_all`), so that later changes to tables.py never
change what this revision does to a database.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fixed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reopened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reopen_count', sa.Integer(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('last_observation_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_findings')),
    sa.UniqueConstraint('ip', 'port', name=op.f('uq_findings_ip_port'))
    )
    op.create_index(op.f('ix_findings_status_severity'), 'findings', ['status', 'severity'], unique=False)
    op.create_table('optouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('contact', sa.String(length=320), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_optouts'))
    )
    op.create_table('scans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('operator', sa.String(length=200), nullable=True),
    sa.Column('command', sa.Text(), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('plan_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('targets_key', sa.String(length=64), nullable=False),
    sa.Column('plan_size', sa.BigInteger(), nullable=False),
    sa.Column('done', sa.BigInteger(), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('version', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scans'))
    )
    op.create_index(op.f('ix_scans_targets_key_id'), 'scans', ['targets_key', 'id'], unique=False)
    op.create_table('scope_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cidr', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scope_entries'))
    )
    op.create_table('finding_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('finding_id', sa.Integer(), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('old_severity', sa.String(length=8), nullable=True),
    sa.Column('new_severity', sa.String(length=8), nullable=True),
    sa.Column('observation_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['finding_id'], ['findings.id'], name=op.f('fk_finding_events_finding_id_findings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], name=op.f('fk_finding_events_scan_id_scans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_finding_events'))
    )
    op.create_index(op.f('ix_finding_events_finding_id'), 'finding_events', ['finding_id'], unique=False)
    op.create_index(op.f('ix_finding_events_scan_id'), 'finding_events', ['scan_id'], unique=False)
    op.create_table('observations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('plan_index', sa.BigInteger(), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('service', sa.String(length=8), nullable=True),
    sa.Column('severity', sa.String(length=8), nullable=True),
    sa.Column('product', sa.String(length=128), nullable=True),
    sa.Column('product_version', sa.String(length=64), nullable=True),
    sa.Column('studies', sa.BigInteger(), nullable=True),
    sa.Column('patients', sa.BigInteger(), nullable=True),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], name=op.f('fk_observations_scan_id_scans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_observations'))
    )
    op.create_index(op.f('ix_observations_ip_port_scanned_at'), 'observations', ['ip', 'port', 'scanned_at'], unique=False)
    op.create_index(op.f('ix_observations_scan_id'), 'observations', ['scan_id'], unique=False)
    op.create_table('scan_work',
    sa.Column('scan_id', sa.Integer(), nullable=False),
    sa.Column('first_index', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('last_index', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['scan_id'], ['scans.id'], name=op.f('fk_scan_work_scan_id_scans'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('scan_id', 'first_index', name=op.f('pk_scan_work'))
    )
    op.create_table('services',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('service', sa.String(length=8), nullable=True),
    sa.Column('product', sa.String(length=128), nullable=True),
    sa.Column('product_version', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=True),
    sa.Column('studies', sa.BigInteger(), nullable=True),
    sa.Column('patients', sa.BigInteger(), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_checked', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_scan_id', sa.Integer(), nullable=True),
    sa.Column('last_observation_id', sa.BigInteger(), nullable=True),
    sa.Column('next_due', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['last_scan_id'], ['scans.id'], name=op.f('fk_services_last_scan_id_scans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services')),
    sa.UniqueConstraint('ip', 'port', name=op.f('uq_services_ip_port'))
    )
    op.create_index(op.f('ix_services_next_due'), 'services', ['next_due'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_services_next_due'), table_name='services')
    op.drop_table('services')
    op.drop_table('scan_work')
    op.drop_index(op.f('ix_observations_scan_id'), table_name='observations')
    op.drop_index(op.f('ix_observations_ip_port_scanned_at'), table_name='observations')
    op.drop_table('observations')
    op.drop_index(op.f('ix_finding_events_scan_id'), table_name='finding_events')
    op.drop_index(op.f('ix_finding_events_finding_id'), table_name='finding_events')
    op.drop_table('finding_events')
    op.drop_table('scope_entries')
    op.drop_index(op.f('ix_scans_targets_key_id'), table_name='scans')
    op.drop_table('scans')
    op.drop_table('optouts')
    op.drop_index(op.f('ix_findings_status_severity'), table_name='findings')
    op.drop_table('findings')
