"""Ledger: windows of any length (period keys are a window's UTC start), allowances with their held part, and
settlements one per request, claimed by the instance whose hold they settle

The ledger's rows are working state (allowances expire within RESERVATION_TTL_SECONDS, settlements within twice
that), so both directions recreate the three tables empty instead of converting rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _drop_all() -> None:
    with op.batch_alter_table('spendplane_settlements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spendplane_settlements_created_at'))
    op.drop_table('spendplane_settlements')
    op.drop_table('spendplane_budget_ledgers')
    op.drop_table('spendplane_allowances')


def upgrade() -> None:
    _drop_all()
    op.create_table('spendplane_allowances',
    sa.Column('budget_key', sa.String(length=300), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.Column('held', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('budget_key', 'period', 'instance_id', name=op.f('pk_spendplane_allowances'))
    )
    op.create_table('spendplane_budget_ledgers',
    sa.Column('budget_key', sa.String(length=300), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('budget_key', 'period', name=op.f('pk_spendplane_budget_ledgers'))
    )
    op.create_table('spendplane_settlements',
    sa.Column('request_id', sa.String(length=256), nullable=False),
    sa.Column('call_id', sa.String(length=256), nullable=False),
    sa.Column('api_key', sa.String(length=64), nullable=False),
    sa.Column('actual', sa.BigInteger(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_spendplane_settlements'))
    )
    with op.batch_alter_table('spendplane_settlements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spendplane_settlements_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spendplane_settlements_created_at'), ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spendplane_settlements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spendplane_settlements_call_id'))
    _drop_all()
    op.create_table('spendplane_allowances',
    sa.Column('budget_key', sa.String(length=300), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('instance_id', sa.String(length=64), nullable=False),
    sa.Column('granted', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('budget_key', 'period', 'instance_id', name=op.f('pk_spendplane_allowances'))
    )
    op.create_table('spendplane_budget_ledgers',
    sa.Column('budget_key', sa.String(length=300), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('budget_key', 'period', name=op.f('pk_spendplane_budget_ledgers'))
    )
    op.create_table('spendplane_settlements',
    sa.Column('call_id', sa.String(length=256), nullable=False),
    sa.Column('request_id', sa.String(length=256), nullable=True),
    sa.Column('actual', sa.BigInteger(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('call_id', name=op.f('pk_spendplane_settlements'))
    )
    with op.batch_alter_table('spendplane_settlements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spendplane_settlements_created_at'), ['created_at'], unique=False)
