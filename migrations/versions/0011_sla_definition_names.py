"""SLA definition names are unique: existing duplicates are renamed "<name> (2)", "<name> (3)", ... (the oldest
keeps its name), then a unique constraint holds it for every writer. Alert deliveries record when they last
changed (`updated_at`; existing rows get their sent or next-attempt time).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME_LENGTH = 200


def _rename_duplicates() -> None:
    bind = op.get_bind()
    table = sa.table('spendplane_sla_definitions', sa.column('id', sa.String), sa.column('name', sa.String),
                     sa.column('created_at', sa.DateTime(timezone=True)))
    rows = bind.execute(sa.select(table.c.id, table.c.name).order_by(table.c.created_at, table.c.id)).all()
    taken = {name for _, name in rows}
    seen: set[str] = set()
    for row_id, name in rows:
        if name not in seen:
            seen.add(name)
            continue
        number = 2
        while True:
            suffix = f" ({number})"
            candidate = name[: _NAME_LENGTH - len(suffix)] + suffix
            if candidate not in taken:
                break
            number += 1
        taken.add(candidate)
        seen.add(candidate)
        bind.execute(sa.update(table).where(table.c.id == row_id).values(name=candidate))


def upgrade() -> None:
    _rename_duplicates()
    with op.batch_alter_table('spendplane_sla_definitions', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_spendplane_sla_definitions_name'), ['name'])
    op.add_column('spendplane_alert_deliveries', sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
    deliveries = sa.table('spendplane_alert_deliveries', sa.column('updated_at', sa.DateTime(timezone=True)),
                          sa.column('sent_at', sa.DateTime(timezone=True)),
                          sa.column('next_attempt_at', sa.DateTime(timezone=True)))
    op.execute(sa.update(deliveries).values(updated_at=sa.func.coalesce(deliveries.c.sent_at,
                                                                        deliveries.c.next_attempt_at)))


def downgrade() -> None:
    with op.batch_alter_table('spendplane_alert_deliveries', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
    with op.batch_alter_table('spendplane_sla_definitions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_spendplane_sla_definitions_name'), type_='unique')
