"""Quarter-hour rollup buckets: a day, week or month in any IANA zone as an exact sum of whole buckets; chargeback
statements carry the time zone of their month

Three bucket tables: the full rollup grain (budgets per key and end user), the summary grain (reports) and the
totals (unfiltered reports), all rebuilt together with their UTC day. They start empty; the rollup job's first
run after the upgrade backfills them from the raw logs (every day that still has raw logs is rebuilt, daily rows
and buckets together, in one transaction per day): the job sees no
`hourly` state row and rebuilds from the first raw day. Days whose raw logs LiteLLM's retention already purged keep
their daily rollup and get no buckets.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spendplane_cost_tracking_buckets",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_group", sa.String(length=256), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("api_key", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("team_id", sa.String(length=256), nullable=False),
        sa.Column("end_user", sa.String(length=256), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket",
            "model_group",
            "model",
            "provider",
            "api_key",
            "user_id",
            "team_id",
            "end_user",
            name=op.f("pk_spendplane_cost_tracking_buckets"),
        ),
    )
    op.create_index(
        "ix_spendplane_cost_tracking_buckets_api_key_bucket", "spendplane_cost_tracking_buckets", ["api_key", "bucket"]
    )
    op.create_index(
        "ix_spendplane_cost_tracking_buckets_end_user_bucket",
        "spendplane_cost_tracking_buckets",
        ["end_user", "bucket"],
    )
    # The same buckets at the summary's grain (no key, no end user): what zoned reports read.
    op.create_table(
        "spendplane_cost_summary_buckets",
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
            "bucket", "model_group", "model", "provider", "user_id", "team_id",
            name=op.f("pk_spendplane_cost_summary_buckets"),
        ),
    )
    # And summed over every dimension: what unfiltered zoned reports read.
    op.create_table(
        "spendplane_cost_total_buckets",
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name=op.f("pk_spendplane_cost_total_buckets")),
    )
    # A chargeback statement's month is a month in a time zone; the existing ones are UTC months.
    with op.batch_alter_table('spendplane_chargeback_reports') as batch:
        batch.add_column(sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False))
    # Whatever an earlier run may have left: the job backfills when this row is missing.
    op.execute("DELETE FROM spendplane_rollup_state WHERE name = 'hourly'")


def downgrade() -> None:
    op.execute("DELETE FROM spendplane_rollup_state WHERE name = 'hourly'")
    with op.batch_alter_table('spendplane_chargeback_reports') as batch:
        batch.drop_column('time_zone')
    op.drop_table("spendplane_cost_total_buckets")
    op.drop_table("spendplane_cost_summary_buckets")
    op.drop_index("ix_spendplane_cost_tracking_buckets_end_user_bucket", table_name="spendplane_cost_tracking_buckets")
    op.drop_index("ix_spendplane_cost_tracking_buckets_api_key_bucket", table_name="spendplane_cost_tracking_buckets")
    op.drop_table("spendplane_cost_tracking_buckets")
