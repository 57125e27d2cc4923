"""The daily summary by local day in the organisation's zone (SPENDPLANE_TIME_ZONE), so a trend in that zone reads
one row per group and local day, as a UTC trend reads the daily summary (issue 11 item 5, branch `trend`).

Starts empty: the rollup job's next run fills it from the summary buckets (it sees no `zone_daily` state row, or one
naming another zone) and keeps it with every UTC day it rebuilds from then on; until then zoned reads take the
offset pieces as before. `spendplane_rollup_state.zone` names the zone the table is kept in. Downgrade drops both.

Revision ID: 0014_zone_daily
Revises: 0013_first_start_soft_limit
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0014_zone_daily"
down_revision: str | None = "0013_first_start_soft_limit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spendplane_cost_zone_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_group", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("team_id", sa.String(length=256), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "model_group", "model", "provider", "user_id", "team_id", name=op.f("pk_spendplane_cost_zone_daily")
        ),
    )
    op.add_column("spendplane_rollup_state", sa.Column("zone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # The state row names a zone only with the new column; without the table it means nothing.
    op.execute("DELETE FROM spendplane_rollup_state WHERE name = 'zone_daily'")
    with op.batch_alter_table("spendplane_rollup_state") as batch:
        batch.drop_column("zone")
    op.drop_table("spendplane_cost_zone_daily")
