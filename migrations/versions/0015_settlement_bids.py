"""Settlement bids: a spend event that more than one instance may hold a hold for (one call id and key reused on two
instances at once) goes to the instance holding the smallest hold of that call id and key, cluster-wide. The
instance that stores it bids its own smallest hold (`bid_by`, `bid_amount`); every instance holding a smaller one
outbids it on its next refresh; once the bidding has been open for the settling delay, the lowest bidder claims it.

Both columns are nullable: existing rows have no bid and are claimed as before. Downgrade drops them.

Revision ID: 0015_settlement_bids
Revises: 0014_zone_daily
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0015_settlement_bids"
down_revision: str | None = "0014_zone_daily"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("spendplane_settlements") as batch:
        batch.add_column(sa.Column("bid_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("bid_amount", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spendplane_settlements") as batch:
        batch.drop_column("bid_amount")
        batch.drop_column("bid_by")
