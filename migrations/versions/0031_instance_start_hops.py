"""process_instance.start_hops: how many instances in a row started each other through thrown messages and signals

A process that starts on a message (or signal) its own instances throw, twice, doubled the instance count at every
run of the outbox, without end. An instance now knows how many such starts led to it; a start past
MAX_START_HOPS (engine/runtime/message_rules.py) is refused. Existing instances count as started from outside (0).

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06 12:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('start_hops', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.drop_column('start_hops')
