"""process_state_history: finished earlier rounds compacted out of an instance's live state

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-04 17:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm


revision = '0019'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('process_state_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('lock_version', sa.Integer(), nullable=False),
    sa.Column('serializer_version', sa.String(length=20), nullable=False),
    sa.Column('tasks', sa.Text(), nullable=False),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'],
                            name=op.f('fk_process_state_history_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_process_state_history'))
    )
    with op.batch_alter_table('process_state_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_process_state_history_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('process_state_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_process_state_history_instance_id'))
    op.drop_table('process_state_history')
