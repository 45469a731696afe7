"""modeller and audit pages: an index for the audit page's object filter

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 01:30:00.000000

Auditors filter the trail by object type and id (docs: web/audit); every other filter already has an
index (time, action, actor, and the stream for process and instance). The head before this one is
0005_inbox_indexes (which comes after 0006_deadlines).
"""
from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_audit_event_object', ['object_type', 'object_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_object')
