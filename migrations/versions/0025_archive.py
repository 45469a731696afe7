"""archive tables for long-ended instances; process_instance.archived_at; task_id of comments/attachments/CC
no longer a foreign key (an archived step's id stays valid in archive_human_task)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 18:31:05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('archive_human_task',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('instance_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('task_guid', sa.String(length=36), autoincrement=False, nullable=False),
    sa.Column('bpmn_id', sa.String(length=200), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=300), autoincrement=False, nullable=False),
    sa.Column('process_key', sa.String(length=120), autoincrement=False, nullable=False),
    sa.Column('lane', sa.String(length=100), autoincrement=False, nullable=True),
    sa.Column('state', sa.String(length=20), autoincrement=False, nullable=False),
    sa.Column('assignee_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('owner_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('form_schema', sa.String(length=255), autoincrement=False, nullable=True),
    sa.Column('form_ui_schema', sa.String(length=255), autoincrement=False, nullable=True),
    sa.Column('priority', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('sla', sa.String(length=20), autoincrement=False, nullable=True),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), autoincrement=False, nullable=False),
    sa.Column('due_at', engine.orm.UTCDateTime(timezone=True), autoincrement=False, nullable=True),
    sa.Column('warn_at', engine.orm.UTCDateTime(timezone=True), autoincrement=False, nullable=True),
    sa.Column('completed_at', engine.orm.UTCDateTime(timezone=True), autoincrement=False, nullable=True),
    sa.Column('completed_by_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('instructions', sa.Text(), autoincrement=False, nullable=True),
    sa.Column('kind', sa.String(length=20), autoincrement=False, nullable=False),
    sa.Column('escalation_unit_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('parent_task_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('cosign_position', sa.String(length=10), autoincrement=False, nullable=True),
    sa.Column('delegation_state', sa.String(length=10), autoincrement=False, nullable=True),
    sa.Column('pending_data', sa.JSON(), autoincrement=False, nullable=True),
    sa.Column('blocked', sa.Boolean(), autoincrement=False, nullable=False),
    sa.Column('escalation', sa.String(length=120), autoincrement=False, nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_archive_human_task_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_archive_human_task'))
    )
    with op.batch_alter_table('archive_human_task', schema=None) as batch_op:
        batch_op.create_index('ix_archive_human_task_instance_id', ['instance_id'], unique=False)

    op.create_table('archive_instance_state',
    sa.Column('instance_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('serializer_version', sa.String(length=20), nullable=False),
    sa.Column('archived_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_archive_instance_state_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_archive_instance_state'))
    )
    op.create_table('archive_process_state_history',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('instance_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('lock_version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('serializer_version', sa.String(length=20), autoincrement=False, nullable=False),
    sa.Column('tasks', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), autoincrement=False, nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_archive_process_state_history_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_archive_process_state_history'))
    )
    with op.batch_alter_table('archive_process_state_history', schema=None) as batch_op:
        batch_op.create_index('ix_archive_process_state_history_instance_id', ['instance_id'], unique=False)

    op.create_table('archive_task_candidate',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('task_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('org_unit_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('role_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.ForeignKeyConstraint(['task_id'], ['archive_human_task.id'], name=op.f('fk_archive_task_candidate_task_id_archive_human_task')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_archive_task_candidate'))
    )
    with op.batch_alter_table('archive_task_candidate', schema=None) as batch_op:
        batch_op.create_index('ix_archive_task_candidate_task_id', ['task_id'], unique=False)

    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_attachment_task_id_human_task'), type_='foreignkey')

    with op.batch_alter_table('carbon_copy', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_carbon_copy_task_id_human_task'), type_='foreignkey')

    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_comment_task_id_human_task'), type_='foreignkey')

    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('archived_at', engine.orm.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_process_instance_ended', ['status', 'ended_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('process_instance', schema=None) as batch_op:
        batch_op.drop_index('ix_process_instance_ended')
        batch_op.drop_column('archived_at')

    with op.batch_alter_table('comment', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_comment_task_id_human_task'), 'human_task', ['task_id'], ['id'])

    with op.batch_alter_table('carbon_copy', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_carbon_copy_task_id_human_task'), 'human_task', ['task_id'], ['id'])

    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_attachment_task_id_human_task'), 'human_task', ['task_id'], ['id'])

    with op.batch_alter_table('archive_task_candidate', schema=None) as batch_op:
        batch_op.drop_index('ix_archive_task_candidate_task_id')

    op.drop_table('archive_task_candidate')
    with op.batch_alter_table('archive_process_state_history', schema=None) as batch_op:
        batch_op.drop_index('ix_archive_process_state_history_instance_id')

    op.drop_table('archive_process_state_history')
    op.drop_table('archive_instance_state')
    with op.batch_alter_table('archive_human_task', schema=None) as batch_op:
        batch_op.drop_index('ix_archive_human_task_instance_id')

    op.drop_table('archive_human_task')
