"""review_meeting and meeting_decision: the biweekly 项目推进暨评审会议, its agenda and decisions

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 18:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_meeting',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('held_on', sa.Date(), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('agenda', sa.JSON(), nullable=False),
        sa.Column('recipients', sa.JSON(), nullable=True),
        sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column('held_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_review_meeting')),
        sa.UniqueConstraint('held_on', name=op.f('uq_review_meeting_held_on')),
    )
    op.create_table(
        'meeting_decision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('meeting_id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=20), nullable=False),
        sa.Column('decision', sa.Text(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=True),
        sa.Column('due_on', sa.Date(), nullable=True),
        sa.Column('recorded_by_id', sa.Integer(), nullable=True),
        sa.Column('recorded_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['meeting_id'], ['review_meeting.id'], name=op.f('fk_meeting_decision_meeting_id_review_meeting')),
        sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_meeting_decision_project_id_project')),
        sa.ForeignKeyConstraint(['recorded_by_id'], ['app_user.id'], name=op.f('fk_meeting_decision_recorded_by_id_app_user')),
        sa.ForeignKeyConstraint(['unit_id'], ['org_unit.id'], name=op.f('fk_meeting_decision_unit_id_org_unit')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_meeting_decision')),
        sa.UniqueConstraint('meeting_id', 'project_id', name='uq_meeting_decision_project'),
    )
    op.create_index(op.f('ix_meeting_decision_meeting_id'), 'meeting_decision', ['meeting_id'], unique=False)
    op.create_index(op.f('ix_meeting_decision_project_id'), 'meeting_decision', ['project_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_meeting_decision_project_id'), table_name='meeting_decision')
    op.drop_index(op.f('ix_meeting_decision_meeting_id'), table_name='meeting_decision')
    op.drop_table('meeting_decision')
    op.drop_table('review_meeting')
