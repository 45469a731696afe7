"""investment_lead: 招商线索 through 派单 → 响应 → 对接 → 反馈

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 18:10:00
"""
from __future__ import annotations

import sqlalchemy as sa

import engine.orm
from alembic import op


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'investment_lead',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=40), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('enterprise', sa.String(length=200), nullable=False),
        sa.Column('industry_id', sa.Integer(), nullable=True),
        sa.Column('investment', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=True),
        sa.Column('handler_id', sa.Integer(), nullable=True),
        sa.Column('responsible_leader_id', sa.Integer(), nullable=True),
        sa.Column('dispatched_by_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('contacts', sa.Integer(), nullable=False),
        sa.Column('due_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
        sa.Column('project_id', sa.Integer(), nullable=True),
        sa.Column('outcome_note', sa.Text(), nullable=False),
        sa.Column('instance_id', sa.Integer(), nullable=True),
        sa.Column('created_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
        sa.Column('closed_at', engine.orm.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['dispatched_by_id'], ['app_user.id'], name=op.f('fk_investment_lead_dispatched_by_id_app_user')),
        sa.ForeignKeyConstraint(['handler_id'], ['app_user.id'], name=op.f('fk_investment_lead_handler_id_app_user')),
        sa.ForeignKeyConstraint(['industry_id'], ['industry.id'], name=op.f('fk_investment_lead_industry_id_industry')),
        sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'], name=op.f('fk_investment_lead_instance_id_process_instance')),
        sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_investment_lead_project_id_project')),
        sa.ForeignKeyConstraint(['responsible_leader_id'], ['app_user.id'], name=op.f('fk_investment_lead_responsible_leader_id_app_user')),
        sa.ForeignKeyConstraint(['unit_id'], ['org_unit.id'], name=op.f('fk_investment_lead_unit_id_org_unit')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_investment_lead')),
        sa.UniqueConstraint('code', name=op.f('uq_investment_lead_code')),
    )
    op.create_index('ix_investment_lead_open_due', 'investment_lead', ['status', 'due_at'], unique=False)
    op.create_index(op.f('ix_investment_lead_instance_id'), 'investment_lead', ['instance_id'], unique=False)
    op.create_index(op.f('ix_investment_lead_unit_id'), 'investment_lead', ['unit_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_investment_lead_unit_id'), table_name='investment_lead')
    op.drop_index(op.f('ix_investment_lead_instance_id'), table_name='investment_lead')
    op.drop_index('ix_investment_lead_open_due', table_name='investment_lead')
    op.drop_table('investment_lead')
