"""SLA monitoring: provider health runs and snapshots, SLA definitions and violations, failover rules and their
transitions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('spendplane_failover_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('primary_model', sa.String(length=256), nullable=False),
    sa.Column('fallback_model', sa.String(length=256), nullable=False),
    sa.Column('trigger_condition', sa.String(length=16), nullable=False),
    sa.Column('trigger_threshold', sa.Float(), nullable=False),
    sa.Column('cooldown_minutes', sa.Integer(), nullable=False),
    sa.Column('evaluation_window_minutes', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_measured', sa.Float(), nullable=True),
    sa.Column('last_evaluated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_failover_rules')),
    sa.UniqueConstraint('primary_model', name=op.f('uq_spendplane_failover_rules_primary_model'))
    )
    op.create_table('spendplane_provider_health',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('client_errors', sa.Integer(), nullable=False),
    sa.Column('rate_limited', sa.Integer(), nullable=False),
    sa.Column('streaming', sa.Integer(), nullable=False),
    sa.Column('latency_p50_us', sa.BigInteger(), nullable=True),
    sa.Column('latency_p95_us', sa.BigInteger(), nullable=True),
    sa.Column('latency_p99_us', sa.BigInteger(), nullable=True),
    sa.Column('ttft_p50_us', sa.BigInteger(), nullable=True),
    sa.Column('ttft_p95_us', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_provider_health')),
    sa.UniqueConstraint('window_end', 'provider', 'model', name=op.f('uq_spendplane_provider_health_window_end_provider_model'))
    )
    op.create_table('spendplane_sla_definitions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('model_pattern', sa.String(length=200), nullable=False),
    sa.Column('target_p50_ms', sa.Float(), nullable=True),
    sa.Column('target_p95_ms', sa.Float(), nullable=True),
    sa.Column('target_p99_ms', sa.Float(), nullable=True),
    sa.Column('target_ttft_p95_ms', sa.Float(), nullable=True),
    sa.Column('target_error_rate', sa.Float(), nullable=True),
    sa.Column('target_availability', sa.Float(), nullable=True),
    sa.Column('evaluation_window_minutes', sa.Integer(), nullable=False),
    sa.Column('alert_emails', sa.JSON(), nullable=False),
    sa.Column('alert_webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_sla_definitions'))
    )
    op.create_table('spendplane_sla_health_runs',
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('groups', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('window_end', name=op.f('pk_spendplane_sla_health_runs'))
    )
    op.create_table('spendplane_failover_transitions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('rule_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('primary_model', sa.String(length=256), nullable=False),
    sa.Column('fallback_model', sa.String(length=256), nullable=False),
    sa.Column('trigger_condition', sa.String(length=16), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('measured', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('alert_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['spendplane_failover_rules.id'], name=op.f('fk_spendplane_failover_transitions_rule_id_spendplane_failover_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_failover_transitions'))
    )
    with op.batch_alter_table('spendplane_failover_transitions', schema=None) as batch_op:
        batch_op.create_index('ix_spendplane_failover_transitions_rule_id_at', ['rule_id', 'at'], unique=False)

    op.create_table('spendplane_sla_violations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('definition_id', sa.String(length=36), nullable=True),
    sa.Column('definition_name', sa.String(length=200), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('model_pattern', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=16), nullable=False),
    sa.Column('target', sa.Float(), nullable=False),
    sa.Column('measured', sa.Float(), nullable=False),
    sa.Column('last_measured', sa.Float(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('window_minutes', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_breached_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('healthy_windows', sa.Integer(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=24), nullable=True),
    sa.Column('resolved_by', sa.String(length=300), nullable=True),
    sa.Column('open_key', sa.String(length=80), nullable=True),
    sa.Column('alert_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['definition_id'], ['spendplane_sla_definitions.id'], name=op.f('fk_spendplane_sla_violations_definition_id_spendplane_sla_definitions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_spendplane_sla_violations')),
    sa.UniqueConstraint('open_key', name=op.f('uq_spendplane_sla_violations_open_key'))
    )
    with op.batch_alter_table('spendplane_sla_violations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spendplane_sla_violations_definition_id'), ['definition_id'], unique=False)
        batch_op.create_index('ix_spendplane_sla_violations_opened_at', ['opened_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('spendplane_sla_violations', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_sla_violations_opened_at')
        batch_op.drop_index(batch_op.f('ix_spendplane_sla_violations_definition_id'))

    op.drop_table('spendplane_sla_violations')
    with op.batch_alter_table('spendplane_failover_transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_spendplane_failover_transitions_rule_id_at')

    op.drop_table('spendplane_failover_transitions')
    op.drop_table('spendplane_sla_health_runs')
    op.drop_table('spendplane_sla_definitions')
    op.drop_table('spendplane_provider_health')
    op.drop_table('spendplane_failover_rules')
