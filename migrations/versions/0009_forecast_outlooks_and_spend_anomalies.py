"""Forecast outlooks (the calibrated daily band behind budget exhaustion dates), spend anomalies and their mutes

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spendplane_anomaly_mutes',
    sa.Column('scope_kind', sa.String(length=16), nullable=False),
    sa.Column('scope_id', sa.String(length=256), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('anomaly_id', sa.String(length=36), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope_kind', 'scope_id', name=op.f('pk_spendplane_anomaly_mutes'))
    )
    op.create_table('spendplane_forecast_outlooks',
    sa.Column('scope_kind', sa.String(length=16), nullable=False),
    sa.Column('scope_id', sa.String(length=256), nullable=False),
    sa.Column('start_day', sa.Date(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('calibration', sa.String(length=16), nullable=False),
    sa.Column('point', sa.JSON(), nullable=False),
    sa.Column('low', sa.JSON(), nullable=False),
    sa.Column('high', sa.JSON(), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope_kind', 'scope_id', name=op.f('pk_spendplane_forecast_outlooks'))
    )
    op.create_table('spendplane_spend_anomalies',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('scope_kind', sa.String(length=16), nullable=False),
    sa.Column('scope_id', sa.String(length=256), nullable=False),
    sa.Column('granularity', sa.String(length=8), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('team_id', sa.String(length=256), nullable=True),
    sa.Column('user_id', sa.String(length=256), nullable=True),
    sa.Column('actual', sa.BigInteger(), nullable=False),
    sa.Column('expected', sa.BigInteger(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('driver_kind', sa.String(length=16), nullable=True),
    sa.Column('driver_id', sa.String(length=256), nullable=True),
    sa.Column('driver_excess', sa.BigInteger(), nullable=True),
    sa.Column('driver_share', sa.Float(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('alert_id', sa.String(length=36), nullable=True),
    sa.Column('handled_by', sa.String(length=256), nullable=True),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_spend_anomalies')),
    sa.UniqueConstraint('scope_kind', 'scope_id', 'granularity', 'bucket_start', name='uq_spendplane_spend_anomalies_scope_bucket')
    )
    with op.batch_alter_table('spendplane_spend_anomalies', schema=None) as batch_op:
        batch_op.create_index('ix_spendplane_spend_anomalies_bucket_start', ['bucket_start'], unique=False)
        batch_op.create_index('ix_spendplane_spend_anomalies_team_id_bucket_start', ['team_id', 'bucket_start'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('spendplane_spend_anomalies', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_spend_anomalies_team_id_bucket_start')
        batch_op.drop_index('ix_spendplane_spend_anomalies_bucket_start')

    op.drop_table('spendplane_spend_anomalies')
    op.drop_table('spendplane_forecast_outlooks')
    op.drop_table('spendplane_anomaly_mutes')
