"""deadlines: SLA watch and escalation steps, 督办 actions, extension requests, notification preferences,
webhooks and report runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 00:25:28.120780
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('deadline_action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_type', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('due_before', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_after', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('target_user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['app_user.id'], name=op.f('fk_deadline_action_actor_id_app_user')),
    sa.ForeignKeyConstraint(['target_user_id'], ['app_user.id'], name=op.f('fk_deadline_action_target_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deadline_action'))
    )
    with op.batch_alter_table('deadline_action', schema=None) as batch_op:
        batch_op.create_index('ix_deadline_action_object', ['object_type', 'object_id', 'at'], unique=False)

    op.create_table('extension_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_type', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_due_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('opinion', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by_id'], ['app_user.id'], name=op.f('fk_extension_request_decided_by_id_app_user')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['app_user.id'], name=op.f('fk_extension_request_requested_by_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extension_request'))
    )
    with op.batch_alter_table('extension_request', schema=None) as batch_op:
        batch_op.create_index('ix_extension_request_object', ['object_type', 'object_id', 'status'], unique=False)

    op.create_table('notify_preference',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_notify_preference_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notify_preference')),
    sa.UniqueConstraint('user_id', 'kind', name='uq_notify_preference_kind')
    )
    with op.batch_alter_table('notify_preference', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notify_preference_user_id'), ['user_id'], unique=False)

    op.create_table('report_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('xlsx', sa.LargeBinary(), nullable=True),
    sa.Column('pdf', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['requested_by_id'], ['app_user.id'], name=op.f('fk_report_run_requested_by_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_run'))
    )
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.create_index('ix_report_run_status', ['status', 'created_at'], unique=False)

    op.create_table('deadline_watch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_type', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=120), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('started_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('warn_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('light', sa.String(length=10), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('next_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('escalated_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['unit_id'], ['org_unit.id'], name=op.f('fk_deadline_watch_unit_id_org_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deadline_watch')),
    sa.UniqueConstraint('object_type', 'object_id', name='uq_deadline_watch_object')
    )
    with op.batch_alter_table('deadline_watch', schema=None) as batch_op:
        batch_op.create_index('ix_deadline_watch_next', ['active', 'next_at'], unique=False)
        batch_op.create_index('ix_deadline_watch_unit', ['unit_id', 'active'], unique=False)

    op.create_table('notify_webhook',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('org_unit_id', sa.Integer(), nullable=True),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('flavor', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['org_unit_id'], ['org_unit.id'], name=op.f('fk_notify_webhook_org_unit_id_org_unit')),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_notify_webhook_user_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notify_webhook')),
    sa.UniqueConstraint('org_unit_id', name=op.f('uq_notify_webhook_org_unit_id')),
    sa.UniqueConstraint('user_id', name=op.f('uq_notify_webhook_user_id'))
    )
    op.create_table('escalation_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('watch_id', sa.Integer(), nullable=False),
    sa.Column('object_type', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=30), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('manual', sa.Boolean(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['app_user.id'], name=op.f('fk_escalation_step_actor_id_app_user')),
    sa.ForeignKeyConstraint(['watch_id'], ['deadline_watch.id'], name=op.f('fk_escalation_step_watch_id_deadline_watch')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_step')),
    sa.UniqueConstraint('object_type', 'object_id', 'round', 'step', name='uq_escalation_step_once')
    )
    with op.batch_alter_table('escalation_step', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalation_step_watch_id'), ['watch_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('escalation_step', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalation_step_watch_id'))

    op.drop_table('escalation_step')
    op.drop_table('notify_webhook')
    with op.batch_alter_table('deadline_watch', schema=None) as batch_op:
        batch_op.drop_index('ix_deadline_watch_unit')
        batch_op.drop_index('ix_deadline_watch_next')

    op.drop_table('deadline_watch')
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.drop_index('ix_report_run_status')

    op.drop_table('report_run')
    with op.batch_alter_table('notify_preference', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notify_preference_user_id'))

    op.drop_table('notify_preference')
    with op.batch_alter_table('extension_request', schema=None) as batch_op:
        batch_op.drop_index('ix_extension_request_object')

    op.drop_table('extension_request')
    with op.batch_alter_table('deadline_action', schema=None) as batch_op:
        batch_op.drop_index('ix_deadline_action_object')

    op.drop_table('deadline_action')
