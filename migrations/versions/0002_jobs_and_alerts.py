"""Jobs and alerts: job runs (one run per tick across replicas), alerts and their delivery outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spendplane_alerts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=48), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('budget_id', sa.String(length=36), nullable=True),
    sa.Column('entity_type', sa.String(length=16), nullable=True),
    sa.Column('entity_id', sa.String(length=256), nullable=True),
    sa.Column('team_id', sa.String(length=256), nullable=True),
    sa.Column('user_id', sa.String(length=256), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('spend', sa.BigInteger(), nullable=True),
    sa.Column('limit_usd', sa.BigInteger(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_alerts')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_spendplane_alerts_dedupe_key'))
    )
    with op.batch_alter_table('spendplane_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_spendplane_alerts_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_spendplane_alerts_team_id_created_at', ['team_id', 'created_at'], unique=False)
        batch_op.create_index('ix_spendplane_alerts_user_id_created_at', ['user_id', 'created_at'], unique=False)

    op.create_table('spendplane_job_runs',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('tick', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('job', 'tick', name=op.f('pk_spendplane_job_runs'))
    )
    op.create_table('spendplane_alert_deliveries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=2000), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['spendplane_alerts.id'], name=op.f('fk_spendplane_alert_deliveries_alert_id_spendplane_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_alert_deliveries'))
    )
    with op.batch_alter_table('spendplane_alert_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_spendplane_alert_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('spendplane_alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_alert_deliveries_status_next_attempt_at')

    op.drop_table('spendplane_alert_deliveries')
    op.drop_table('spendplane_job_runs')
    with op.batch_alter_table('spendplane_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_alerts_user_id_created_at')
        batch_op.drop_index('ix_spendplane_alerts_team_id_created_at')
        batch_op.drop_index('ix_spendplane_alerts_created_at')

    op.drop_table('spendplane_alerts')
