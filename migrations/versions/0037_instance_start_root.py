"""process_instance.start_root_id: the lineage of instances started from inside engine runs

A process whose service tasks start the same process again (start_process) doubled its instances at every
generation; with a timer between generations each ran in a unit of work of its own, and nothing stopped it. An
instance started from inside an engine run now names the instance at the head of its line (the one started from
outside), and a start is refused while JZFLOW_MAX_OPEN_DESCENDANTS of that line are open
(engine/runtime/start_limits.py). Existing instances count as started from outside (NULL): a lineage begins with
the first start after the upgrade. The index holds only the rows that have a root (most have none).

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-08 12:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0037'
down_revision = '0036'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('start_root_id', sa.Integer(), nullable=True))
    where = sa.text('start_root_id IS NOT NULL')
    op.create_index('ix_process_instance_start_root', 'process_instance', ['start_root_id', 'status'], unique=False,
                    postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index('ix_process_instance_start_root', table_name='process_instance')
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.drop_column('start_root_id')
