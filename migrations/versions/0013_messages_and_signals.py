"""messages and signals: buffer, subscriptions, signal deliveries

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 17:25:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bpmn_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=True),
    sa.Column('correlation', sa.String(length=500), nullable=True),
    sa.Column('business_key', sa.String(length=200), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('expires_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('source_instance_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['app_user.id'], name=op.f('fk_bpmn_message_created_by_id_app_user')),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_bpmn_message_instance_id_process_instance')),
    sa.ForeignKeyConstraint(['source_instance_id'], ['process_instance.id'], name=op.f('fk_bpmn_message_source_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bpmn_message')),
    sa.UniqueConstraint('kind', 'name', 'message_id', name='uq_bpmn_message_id')
    )
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.create_index('ix_bpmn_message_buffered', ['kind', 'name', 'status', 'correlation'], unique=False)
        batch_op.create_index(batch_op.f('ix_bpmn_message_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_bpmn_message_status', ['status', 'expires_at'], unique=False)

    op.create_table('message_subscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('task_guid', sa.String(length=36), nullable=False),
    sa.Column('bpmn_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('correlation', sa.String(length=500), nullable=True),
    sa.Column('business_key', sa.String(length=200), nullable=True),
    sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_message_subscription_instance_id_process_instance')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_subscription')),
    sa.UniqueConstraint('instance_id', 'task_guid', name='uq_message_subscription_task')
    )
    with op.batch_alter_table('message_subscription', schema=None) as batch_op:
        batch_op.create_index('ix_message_subscription_business_key', ['kind', 'name', 'business_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_subscription_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_message_subscription_match', ['kind', 'name', 'correlation'], unique=False)

    op.create_table('signal_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signal_id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('done_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_signal_delivery_instance_id_process_instance')),
    sa.ForeignKeyConstraint(['signal_id'], ['bpmn_message.id'], name=op.f('fk_signal_delivery_signal_id_bpmn_message')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signal_delivery')),
    sa.UniqueConstraint('signal_id', 'instance_id', name='uq_signal_delivery')
    )
    with op.batch_alter_table('signal_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signal_delivery_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index('ix_signal_delivery_pending', ['state', 'signal_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signal_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_signal_delivery_pending')
        batch_op.drop_index(batch_op.f('ix_signal_delivery_instance_id'))

    op.drop_table('signal_delivery')
    with op.batch_alter_table('message_subscription', schema=None) as batch_op:
        batch_op.drop_index('ix_message_subscription_match')
        batch_op.drop_index(batch_op.f('ix_message_subscription_instance_id'))
        batch_op.drop_index('ix_message_subscription_business_key')

    op.drop_table('message_subscription')
    with op.batch_alter_table('bpmn_message', schema=None) as batch_op:
        batch_op.drop_index('ix_bpmn_message_status')
        batch_op.drop_index(batch_op.f('ix_bpmn_message_instance_id'))
        batch_op.drop_index('ix_bpmn_message_buffered')

    op.drop_table('bpmn_message')
