"""bpmn_message.reason: why the outbox job refused or expired a message

A message kept pending because its waiting instance was busy stayed `pending` for good once the outbox gave its row up
after ten tries: only the outbox alert showed it. The outbox job now marks it refused (or expired, its time to live
over) and says why in this column, which 消息与信号 and GET /api/messages/{id} show; an admin may route a refused
message again, which clears it. Messages from before this migration have none.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-09 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0039'
down_revision = '0038'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.drop_column('reason')
