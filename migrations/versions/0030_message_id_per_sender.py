"""bpmn_message: a message_id is unique per sender, no longer per message name

With (kind, name, message_id) every sender shared one space of ids: a second applicant's `withdraw` with the id
the first had used was answered `duplicate` with the first one's message and instance, and never reached its own
instance; a user without the right to send a message learnt another sender's message and instance ids from a
taken id. Now a user's ids are unique per user (kind, name, message_id, created_by_id) and the system's, which
has no user, among the system's (created_by_id NULL: two NULLs never collide in a unique index, PostgreSQL's or
SQLite's, so the system gets an index of its own). Each holds only its own rows with a message_id.

Downgrade restores the old key, and is refused, changing nothing, while two senders hold one id of one name.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-06 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None

USER_SENT = sa.text('message_id IS NOT NULL AND created_by_id IS NOT NULL')
SYSTEM_SENT = sa.text('message_id IS NOT NULL AND created_by_id IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.drop_constraint('uq_bpmn_message_id', type_='unique')
        batch_op.create_index('uq_bpmn_message_sender_id', ['kind', 'name', 'message_id', 'created_by_id'],
                              unique=True, postgresql_where=USER_SENT, sqlite_where=USER_SENT)
        batch_op.create_index('uq_bpmn_message_system_id', ['kind', 'name', 'message_id'],
                              unique=True, postgresql_where=SYSTEM_SENT, sqlite_where=SYSTEM_SENT)


def downgrade() -> None:
    shared = op.get_bind().execute(sa.text(
        'SELECT name, message_id FROM bpmn_message WHERE message_id IS NOT NULL GROUP BY kind, name, message_id '
        'HAVING count(*) > 1 ORDER BY name, message_id')).all()
    if shared:
        named = '; '.join(f'{name} {message_id!r}' for name, message_id in shared[:5])
        raise RuntimeError(f'downgrade refused, nothing changed: {len(shared)} message ids are each held by more '
                           f'than one sender ({named}), which the old key forbids; clear message_id of the later '
                           'rows and downgrade again')
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.drop_index('uq_bpmn_message_system_id')
        batch_op.drop_index('uq_bpmn_message_sender_id')
        batch_op.create_unique_constraint('uq_bpmn_message_id', ['kind', 'name', 'message_id'])
