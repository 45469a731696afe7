"""human_task keeps the rows of a reopened step: unique task guid only among open rows

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 14:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('ready', 'suspended')")


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_constraint('uq_human_task_guid', type_='unique')
        batch_op.create_index('ix_human_task_guid', ['instance_id', 'task_guid'], unique=False)
        batch_op.create_index('uq_human_task_guid_open', ['instance_id', 'task_guid'], unique=True,
                              sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade() -> None:
    # Only possible while no step has more than one row (no 退回 / 撤回 since the upgrade).
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index('uq_human_task_guid_open')
        batch_op.drop_index('ix_human_task_guid')
        batch_op.create_unique_constraint('uq_human_task_guid', ['instance_id', 'task_guid'])
