"""Directory sync and single sign-on: where a user or unit comes from, its directory key, a user's leader

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 17:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('manager_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_app_user_external_id', ['external_id'], unique=False)
        batch_op.create_foreign_key('fk_app_user_manager_id_app_user', 'app_user', ['manager_id'], ['id'])
    with op.batch_alter_table('org_unit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('external_id', sa.String(length=400), nullable=True))
        batch_op.create_index('ix_org_unit_external_id', ['external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('org_unit', schema=None) as batch_op:
        batch_op.drop_index('ix_org_unit_external_id')
        batch_op.drop_column('external_id')
        batch_op.drop_column('source')
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_constraint('fk_app_user_manager_id_app_user', type_='foreignkey')
        batch_op.drop_index('ix_app_user_external_id')
        batch_op.drop_column('manager_id')
        batch_op.drop_column('external_id')
        batch_op.drop_column('source')
