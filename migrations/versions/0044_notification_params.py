"""notification.params: the notice as its text id and arguments (engine.notify.texts), so the web renders it in the
reader's language; title and body stay its Chinese rendering (e-mail, webhooks and rows written before this have
only those). Existing rows get null: they are shown as stored.

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-07 04:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0044'
down_revision = '0043'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('params', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('params')
