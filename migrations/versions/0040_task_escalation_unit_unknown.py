"""human_task.escalation_unit_unknown: the name a task's escalationUnit gave when it is no unit

The unit head's rung of such a task passes to the rung above instead of climbing from the handler's unit as if the
model had named none, and the process owners are told once which element names what (engine.deadlines.unknown_units).
The column holds the name as told (printable, at most 80 characters and a mark); the archive keeps it with the step.
Tasks from before this migration have none.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-06 15:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0040'
down_revision = '0039'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('human_task', 'archive_human_task'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('escalation_unit_unknown', sa.String(length=100), nullable=True))


def downgrade() -> None:
    for table in ('archive_human_task', 'human_task'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('escalation_unit_unknown')
