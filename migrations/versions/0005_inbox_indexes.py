"""inbox indexes: 待办 index-only in page order, 已办 by who completed it

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:40:00.000000

Numbered 0005 as reserved for the inbox, but it comes after 0006_deadlines, which already revises 0004:
revising 0004 as well would leave two heads, and databases already at 0006 would never get it.
"""
from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        # (assignee_id, state, due_at) → + id: the keyset pages of 待办 become index-only scans in order.
        batch_op.drop_index('ix_human_task_assignee_open')
        batch_op.create_index('ix_human_task_assignee_open', ['assignee_id', 'state', 'due_at', 'id'], unique=False)
        # 已办 (tasks I completed, newest first) and its count were a sequential scan.
        batch_op.create_index('ix_human_task_done', ['completed_by_id', 'completed_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index('ix_human_task_done')
        batch_op.drop_index('ix_human_task_assignee_open')
        batch_op.create_index('ix_human_task_assignee_open', ['assignee_id', 'state', 'due_at'], unique=False)
