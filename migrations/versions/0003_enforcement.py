"""Enforcement: price overrides, budget ledgers, allowances and settlements

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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
    op.create_table('spendplane_model_prices',
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('input_per_million', sa.BigInteger(), nullable=False),
    sa.Column('output_per_million', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('model', name=op.f('pk_spendplane_model_prices'))
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



def downgrade() -> None:
    with op.batch_alter_table('spendplane_settlements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spendplane_settlements_created_at'))

    op.drop_table('spendplane_settlements')
    op.drop_table('spendplane_model_prices')
    op.drop_table('spendplane_budget_ledgers')
    op.drop_table('spendplane_allowances')
