"""bpmn_message: an index of the messages each sender has kept from outside

A sender may keep at most JZFLOW_MESSAGE_BUFFER_PER_SENDER messages from outside for catches not waiting yet
(engine/runtime/message_rules.py check_keep): before, only the API's rate limit bounded them (600 a minute of up to
64 KB, kept up to 30 days). The count runs each time a message is kept; this index holds only the kept ones from
outside, by sender and expiry.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-08 13:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0038'
down_revision = '0037'
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("status = 'buffered' AND source_instance_id IS NULL")
    op.create_index('ix_bpmn_message_kept_by', 'bpmn_message', ['created_by_id', 'expires_at'], unique=False,
                    postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index('ix_bpmn_message_kept_by', table_name='bpmn_message')
