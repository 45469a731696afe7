"""app_user.language: the person's language, "zh-CN" or "en" (engine.notify.language). It decides the pages they see
once logged in, on any browser, and the words of the e-mail and own webhooks sent to them. Null until they choose one
(the language switch or 通知设置): their pages follow the browser's `lang` cookie and their mail is Chinese, the
default. Existing accounts get null.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-07 05:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0045'
down_revision = '0044'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('app_user', schema=None) as batch_op:
        batch_op.drop_column('language')
