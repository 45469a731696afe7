"""项目落地: library membership, 竣工/投产 reports to confirm, 要素保障 needs, approval stages, 标准地, evidence

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 17:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('standard_land', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('project_stage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('evidence', sa.String(length=300), server_default='', nullable=False))
    op.create_table(
        'project_library_member',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('library_id', sa.Integer(), nullable=False),
        sa.Column('added_by_id', sa.Integer(), nullable=True),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['project.id']),
        sa.ForeignKeyConstraint(['library_id'], ['project_library.id']),
        sa.ForeignKeyConstraint(['added_by_id'], ['app_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'library_id', name='uq_project_library_member'),
    )
    op.create_index('ix_project_library_member_project_id', 'project_library_member', ['project_id'])
    op.create_index('ix_project_library_member_library_id', 'project_library_member', ['library_id'])
    op.create_table(
        'project_stage_report',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('stage', sa.String(length=20), nullable=False),
        sa.Column('on', sa.Date(), nullable=False),
        sa.Column('evidence', sa.String(length=300), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('reported_by_id', sa.Integer(), nullable=True),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['project.id']),
        sa.ForeignKeyConstraint(['reported_by_id'], ['app_user.id']),
        sa.ForeignKeyConstraint(['decided_by_id'], ['app_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'stage', name='uq_project_stage_report'),
    )
    op.create_index('ix_project_stage_report_project_id', 'project_stage_report', ['project_id'])
    op.create_table(
        'project_need',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('raised_by_id', sa.Integer(), nullable=True),
        sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_by_id', sa.Integer(), nullable=True),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolution', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['project.id']),
        sa.ForeignKeyConstraint(['raised_by_id'], ['app_user.id']),
        sa.ForeignKeyConstraint(['resolved_by_id'], ['app_user.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_project_need_project_id', 'project_need', ['project_id'])
    op.create_index('ix_project_need_status', 'project_need', ['status'])
    op.create_table(
        'project_approval',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('stage', sa.String(length=40), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('certified_on', sa.Date(), nullable=True),
        sa.Column('used_wd', sa.Integer(), nullable=True),
        sa.Column('serial_wd', sa.Integer(), nullable=True),
        sa.Column('saved_wd', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['project.id']),
        sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('project_id', 'stage', name='uq_project_approval_stage'),
        sa.UniqueConstraint('instance_id'),
    )
    op.create_index('ix_project_approval_project_id', 'project_approval', ['project_id'])


def downgrade() -> None:
    op.drop_table('project_approval')
    op.drop_table('project_need')
    op.drop_table('project_stage_report')
    op.drop_table('project_library_member')
    with op.batch_alter_table('project_stage', schema=None) as batch_op:
        batch_op.drop_column('evidence')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('standard_land')
