"""Summary blocks: the summary-grain quarter-hour buckets summed over blocks of 1, 2, 4 and 8 hours aligned on UTC
midnight, so a zoned report reads the whole hours of its offset's pieces from a few blocks instead of every quarter
hour (branch `zones`, issue 11).

Filled here from the existing summary buckets (each length from the one before it), so every day that has buckets
has its blocks; the rollup keeps them with their UTC day from then on. Rows are written in block order, so a
block's rows sit together on disk (a block read is a few pages, not one page per row). Downgrade drops the table.

Revision ID: 0012_zones
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0012_zones"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRAIN = "model_group, model, provider, user_id, team_id"
_MEASURES = "requests, failures, input_tokens, output_tokens, spend"
_SUMS = "SUM(requests), SUM(failures), SUM(input_tokens), SUM(output_tokens), SUM(spend)"


def _block(dialect: str, hours: int) -> str:
    """The start of the block of `hours` a bucket falls in, in the bucket column's storage form."""
    if dialect == "postgresql":
        utc = "(bucket AT TIME ZONE 'UTC')"
        return (
            f"((date_trunc('day', {utc}) + floor(extract(hour FROM {utc}) / {hours}) * interval '{hours} hours')"
            " AT TIME ZONE 'UTC')"
        )
    return (
        f"(substr(bucket, 1, 11) || printf('%02d', (CAST(substr(bucket, 12, 2) AS INTEGER) / {hours}) * {hours})"
        " || ':00:00.000000')"
    )


def upgrade() -> None:
    op.create_table(
        "spendplane_cost_summary_blocks",
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
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
            "minutes", "bucket", "model_group", "model", "provider", "user_id", "team_id",
            name=op.f("pk_spendplane_cost_summary_blocks"),
        ),
    )
    dialect = op.get_bind().dialect.name
    source, where = "spendplane_cost_summary_buckets", ""
    for minutes in (60, 120, 240, 480):
        op.execute(
            f"INSERT INTO spendplane_cost_summary_blocks (minutes, bucket, {_GRAIN}, {_MEASURES}) "
            f"SELECT {minutes}, {_block(dialect, minutes // 60)} AS b_block, {_GRAIN}, {_SUMS} "
            f"FROM {source} {where} GROUP BY b_block, {_GRAIN} ORDER BY b_block, {_GRAIN}"
        )
        source, where = "spendplane_cost_summary_blocks", f"WHERE minutes = {minutes}"
    if dialect == "postgresql":
        op.execute("ANALYZE spendplane_cost_summary_blocks")


def downgrade() -> None:
    op.drop_table("spendplane_cost_summary_blocks")
