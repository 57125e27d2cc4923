"""Budget windows: a period (daily to yearly) in an IANA time zone with its anchors, a general limit, and one
budget per entity and period

Existing budgets become monthly budgets in UTC starting on the 1st, with the same limit: their figures do not
change. Downgrading needs every budget to be such a budget (the older schema has no other kind, nor two budgets
of one entity); it refuses, saying which, rather than drop a budget.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('spendplane_budgets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('period', sa.String(length=16), server_default='monthly', nullable=False))
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False))
        batch_op.add_column(sa.Column('week_starts_on', sa.String(length=9), server_default='monday', nullable=False))
        batch_op.add_column(sa.Column('month_start_day', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('year_start_month', sa.Integer(), server_default='1', nullable=False))
        batch_op.alter_column('monthly_limit', new_column_name='spend_limit', existing_type=sa.BigInteger(),
                              existing_nullable=False)
        batch_op.drop_constraint('uq_spendplane_budgets_entity_type_entity_id', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_spendplane_budgets_entity_type_entity_id_period'), ['entity_type', 'entity_id', 'period']
        )


def downgrade() -> None:
    bind = op.get_bind()
    others = bind.execute(sa.text(
        "SELECT name, entity_type, period FROM spendplane_budgets WHERE period <> 'monthly' OR time_zone <> 'UTC' "
        "OR month_start_day <> 1 OR year_start_month <> 1 OR entity_type = 'tag'"
    )).all()
    if others:
        listed = ", ".join(f"{name!r} ({kind}, {period})" for name, kind, period in others[:10])
        raise RuntimeError(
            f"cannot downgrade below 0007: {len(others)} budget(s) are not calendar-month UTC budgets of a user, "
            f"team, key, end user or the platform: {listed}. Delete or change them first."
        )
    with op.batch_alter_table('spendplane_budgets', schema=None) as batch_op:
        batch_op.drop_constraint('uq_spendplane_budgets_entity_type_entity_id_period', type_='unique')
        batch_op.create_unique_constraint(
            batch_op.f('uq_spendplane_budgets_entity_type_entity_id'), ['entity_type', 'entity_id']
        )
        batch_op.alter_column('spend_limit', new_column_name='monthly_limit', existing_type=sa.BigInteger(),
                              existing_nullable=False)
        batch_op.drop_column('year_start_month')
        batch_op.drop_column('month_start_day')
        batch_op.drop_column('week_starts_on')
        batch_op.drop_column('time_zone')
        batch_op.drop_column('period')
