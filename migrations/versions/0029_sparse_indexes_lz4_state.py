"""Indexes of mostly empty columns leave the empty rows out; an instance's state is compressed with lz4

human_task.completed_by_id and parent_task_id and task_candidate's user_id, org_unit_id and role_id are empty in
most rows (an open task has no finisher, few tasks are co-signers, a candidate names one of user, unit or role)
and are only looked up by a value, so their indexes hold only the rows that fill them: a completion wrote five
index entries fewer. The state (4-10 KB of JSON, rewritten by every save) is compressed with lz4 instead of pglz
where the server has it (PostgreSQL 14 and later, built with lz4): a save and a read cost less server time.
Existing states stay in pglz until their next save; both are read alike.

The indexes are built again, which reads each table once: seconds for a million tasks, in the upgrade's
transaction.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 17:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None

SPARSE = (  # index, table, columns (the first one may be empty)
    ('ix_human_task_done', 'human_task', ['completed_by_id', 'completed_at', 'id']),
    ('ix_human_task_parent_task_id', 'human_task', ['parent_task_id']),
    ('ix_task_candidate_user_id', 'task_candidate', ['user_id']),
    ('ix_task_candidate_org_unit_id', 'task_candidate', ['org_unit_id']),
    ('ix_task_candidate_role_id', 'task_candidate', ['role_id']),
)


def _lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return False
    methods = bind.scalar(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    return bool(methods) and 'lz4' in methods


def upgrade() -> None:
    for name, table, columns in SPARSE:
        op.drop_index(name, table_name=table)
        where = sa.text(f'{columns[0]} IS NOT NULL')
        op.create_index(name, table, columns, unique=False, postgresql_where=where, sqlite_where=where)
    if _lz4():
        op.execute('ALTER TABLE process_instance ALTER COLUMN state SET COMPRESSION lz4')


def downgrade() -> None:
    if _lz4():
        op.execute('ALTER TABLE process_instance ALTER COLUMN state SET COMPRESSION pglz')
    for name, table, columns in SPARSE:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)
