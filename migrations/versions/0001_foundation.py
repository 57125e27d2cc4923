"""Foundation: budgets, feature settings, instance secrets; LiteLLM-compatible tables in embedded mode.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.litellm import create_embedded_tables, drop_embedded_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _embedded() -> bool:
    return bool(op.get_context().config.attributes.get("embedded"))


def upgrade() -> None:
    op.create_table(
        "spendplane_budgets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=256), nullable=False),
        sa.Column("monthly_limit", sa.BigInteger(), nullable=False),
        sa.Column("soft_limit_percent", sa.Integer(), nullable=False),
        sa.Column("hard_limit_percent", sa.Integer(), nullable=False),
        sa.Column("alert_email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spendplane_budgets")),
        sa.UniqueConstraint("entity_type", "entity_id", name=op.f("uq_spendplane_budgets_entity_type_entity_id")),
    )
    op.create_table(
        "spendplane_feature_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cost_tracking_enabled", sa.Boolean(), nullable=False),
        sa.Column("budget_enforcement_enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spendplane_feature_settings")),
    )
    op.execute(
        sa.text(
            "INSERT INTO spendplane_feature_settings "
            "(id, cost_tracking_enabled, budget_enforcement_enabled, updated_at, updated_by) "
            "VALUES (1, :on, :on, CURRENT_TIMESTAMP, 'migration')"
        ).bindparams(on=True)
    )
    op.create_table(
        "spendplane_instance_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_spendplane_instance_secrets")),
    )
    if _embedded():
        create_embedded_tables(op.get_bind())


def downgrade() -> None:
    if _embedded():
        drop_embedded_tables(op.get_bind())
    op.drop_table("spendplane_instance_secrets")
    op.drop_table("spendplane_feature_settings")
    op.drop_table("spendplane_budgets")
