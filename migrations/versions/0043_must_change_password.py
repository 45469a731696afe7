"""app_user.must_change_password: set by an administrator's password reset (管理 → 编辑人员 → 重置密码, `jzflow
reset-password`); the person changes the temporary password at their next login, and is let nowhere else until then.
Existing accounts get false.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-06 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0043'
down_revision = '0042'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
