"""task escalation unit: the org unit a task's escalation climbs from (user-task property escalationUnit)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 18:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('escalation_unit_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_human_task_escalation_unit', 'org_unit', ['escalation_unit_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_constraint('fk_human_task_escalation_unit', type_='foreignkey')
        batch_op.drop_column('escalation_unit_id')
