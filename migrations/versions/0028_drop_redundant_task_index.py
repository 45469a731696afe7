"""human_task: drop ix_human_task_instance_id, which ix_human_task_guid (instance_id, task_guid) already serves

Every projection write maintained both: a new row and every state change of an open row (state is indexed, so
the UPDATE is never HOT) wrote an entry into each of the table's indexes.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 00:15:00
"""
from __future__ import annotations

from alembic import op

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_human_task_instance_id', table_name='human_task')


def downgrade() -> None:
    op.create_index('ix_human_task_instance_id', 'human_task', ['instance_id'], unique=False)
