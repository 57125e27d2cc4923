"""A budget's soft limit may be kept as an amount (`soft_limit_usd`, nano-USD, null: limit x soft_limit_percent),
so the first start's global budget warns at GLOBAL_SOFT_BUDGET_USD exactly ($1,000 of $1,500 is 66.6666...%, which
six decimals of a fraction stored as 0.666666: it warned at $999.999).

The global budget a first start created before this revision gets its amount back from the first start's marker
(`first_global_budget` = "<hard>/<soft>" USD) when it is still as created: same name, limit and percents (an edited
one is left as the admin made it). Downgrade drops the column (the percent is still there).

Revision ID: 0013_first_start_soft_limit
Revises: 0012_zones
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal, InvalidOperation

import sqlalchemy as sa
from alembic import op


revision: str = "0013_first_start_soft_limit"
down_revision: str | None = "0012_zones"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NANOS = 10**9
_PPM = 10**6


def _restore_first_start_amount() -> None:
    bind = op.get_bind()
    secrets = sa.table("spendplane_instance_secrets", sa.column("name", sa.String), sa.column("value", sa.String))
    marker = bind.execute(sa.select(secrets.c.value).where(secrets.c.name == "first_global_budget")).scalar()
    if not marker:
        return
    try:
        hard, soft = (Decimal(part) for part in marker.split("/"))
    except (ValueError, InvalidOperation):
        return
    if not (hard.is_finite() and soft.is_finite() and 0 < soft <= hard):
        return
    percent = (soft / hard).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)  # as the first start stored it
    budgets = sa.table(
        "spendplane_budgets",
        sa.column("name", sa.String),
        sa.column("entity_type", sa.String),
        sa.column("spend_limit", sa.BigInteger),
        sa.column("soft_limit_percent", sa.Integer),
        sa.column("hard_limit_percent", sa.Integer),
        sa.column("soft_limit_usd", sa.BigInteger),
    )
    bind.execute(
        sa.update(budgets)
        .where(
            budgets.c.name == "Global Monthly Budget",
            budgets.c.entity_type == "global",
            budgets.c.spend_limit == int(hard * _NANOS),
            budgets.c.soft_limit_percent == int(percent * _PPM),
            budgets.c.hard_limit_percent == _PPM,
        )
        .values(soft_limit_usd=int(soft * _NANOS))
    )


def upgrade() -> None:
    op.add_column("spendplane_budgets", sa.Column("soft_limit_usd", sa.BigInteger(), nullable=True))
    _restore_first_start_amount()


def downgrade() -> None:
    with op.batch_alter_table("spendplane_budgets", schema=None) as batch_op:
        batch_op.drop_column("soft_limit_usd")
