"""FinOps: the daily rollup (cost_tracking_daily), its daily and monthly summaries without key and end user, and
its watermark; allocation rules, chargeback statements and their lines, forecasts; plus the guide's
`cost_tracking_daily` view (spend in USD) over the rollup.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _summary_table(name: str, period: str) -> None:
    """The daily and the monthly summary differ only in their first column (a day, or a month's first day)."""
    op.create_table(name,
    sa.Column(period, sa.Date(), nullable=False),
    sa.Column('model_group', sa.String(length=256), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=256), nullable=False),
    sa.Column('team_id', sa.String(length=256), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('spend', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint(period, 'model_group', 'model', 'provider', 'user_id', 'team_id', name=op.f(f'pk_{name}'))
    )


def upgrade() -> None:
    op.create_table('spendplane_allocation_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('team_id', sa.String(length=256), nullable=False),
    sa.Column('allocation_type', sa.String(length=16), nullable=False),
    sa.Column('allocation_target', sa.String(length=128), nullable=False),
    sa.Column('allocation_percent', sa.Integer(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_allocation_rules')),
    sa.UniqueConstraint('team_id', 'allocation_type', 'allocation_target', name=op.f('uq_spendplane_allocation_rules_team_id_allocation_type_allocation_target'))
    )
    op.create_table('spendplane_chargeback_reports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total_cost', sa.BigInteger(), nullable=False),
    sa.Column('allocated_cost', sa.BigInteger(), nullable=False),
    sa.Column('unallocated_cost', sa.BigInteger(), nullable=False),
    sa.Column('adjustment_cost', sa.BigInteger(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('generated_by', sa.String(length=100), nullable=False),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finalized_by', sa.String(length=100), nullable=True),
    sa.Column('exported_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_export_format', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_chargeback_reports')),
    sa.UniqueConstraint('period', name=op.f('uq_spendplane_chargeback_reports_period'))
    )
    op.create_table('spendplane_cost_tracking_daily',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('model_group', sa.String(length=256), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('api_key', sa.String(length=128), nullable=False),
    sa.Column('user_id', sa.String(length=256), nullable=False),
    sa.Column('team_id', sa.String(length=256), nullable=False),
    sa.Column('end_user', sa.String(length=256), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('failures', sa.BigInteger(), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('spend', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'model_group', 'model', 'provider', 'api_key', 'user_id', 'team_id', 'end_user', name=op.f('pk_spendplane_cost_tracking_daily'))
    )
    # Budgets per key and per end user read a month of these rows for a few ids, not the whole month.
    op.create_index('ix_spendplane_cost_tracking_daily_api_key_day', 'spendplane_cost_tracking_daily', ['api_key', 'day'])
    op.create_index('ix_spendplane_cost_tracking_daily_end_user_day', 'spendplane_cost_tracking_daily', ['end_user', 'day'])
    _summary_table('spendplane_cost_summary_daily', 'day')
    _summary_table('spendplane_cost_summary_monthly', 'month')
    op.create_table('spendplane_forecasts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('scope', sa.String(length=256), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('horizon', sa.String(length=16), nullable=False),
    sa.Column('forecasted_cost', sa.BigInteger(), nullable=False),
    sa.Column('confidence_low', sa.BigInteger(), nullable=False),
    sa.Column('confidence_high', sa.BigInteger(), nullable=False),
    sa.Column('actual_to_date', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('backtest', sa.JSON(), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_forecasts')),
    sa.UniqueConstraint('scope', 'period', name=op.f('uq_spendplane_forecasts_scope_period'))
    )
    op.create_table('spendplane_rollup_state',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('built_through', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('days_rebuilt', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_spendplane_rollup_state'))
    )
    op.create_table('spendplane_chargeback_lines',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('team_id', sa.String(length=256), nullable=True),
    sa.Column('allocation_type', sa.String(length=16), nullable=True),
    sa.Column('allocation_target', sa.String(length=128), nullable=True),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.Column('posted', sa.Boolean(), nullable=False),
    sa.Column('rule_id', sa.String(length=36), nullable=True),
    sa.Column('rule_name', sa.String(length=200), nullable=True),
    sa.Column('adjusts_period', sa.String(length=7), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['report_id'], ['spendplane_chargeback_reports.id'], name=op.f('fk_spendplane_chargeback_lines_report_id_spendplane_chargeback_reports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_chargeback_lines'))
    )
    with op.batch_alter_table('spendplane_chargeback_lines', schema=None) as batch_op:
        batch_op.create_index('ix_spendplane_chargeback_lines_report_id_position', ['report_id', 'position'], unique=False)

    # The guide's name for the daily aggregates, for BI tools: the rollup with spend in USD (exact NUMERIC on
    # PostgreSQL, REAL on SQLite; spendplane itself reads the integer nano-USD column).
    op.execute(
        "CREATE VIEW cost_tracking_daily AS SELECT day, model_group, model, provider, api_key, user_id, team_id, "
        "end_user, requests, failures, input_tokens, output_tokens, spend AS spend_nanos, "
        "spend / 1000000000.0 AS spend_usd FROM spendplane_cost_tracking_daily"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS cost_tracking_daily")
    with op.batch_alter_table('spendplane_chargeback_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_chargeback_lines_report_id_position')

    op.drop_table('spendplane_chargeback_lines')
    op.drop_table('spendplane_rollup_state')
    op.drop_table('spendplane_forecasts')
    op.drop_table('spendplane_cost_summary_daily')
    op.drop_table('spendplane_cost_summary_monthly')
    op.drop_table('spendplane_cost_tracking_daily')
    op.drop_table('spendplane_chargeback_reports')
    op.drop_table('spendplane_allocation_rules')
