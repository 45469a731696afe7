"""api_token.scope: a token is read-only or read-write

Every token could do everything its user can. A token now carries its scope, chosen at issue: `read` (GET, HEAD and
OPTIONS only; anything else is refused 403 token_read_only) or `read_write` (everything its user may do). Tokens
issued before this migration keep the power they always had: read_write; so do tokens the old code, still running
during an upgrade, issues without a scope (the column's server default; the new code always names the scope).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-08 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0035'
down_revision = '0034'
branch_labels = None
depends_on = None

EXISTING_TOKENS_SCOPE = 'read_write'  # engine/org/tokens.py READ_WRITE, copied: a migration never changes with the code


def upgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=20), nullable=False,
                                      server_default=EXISTING_TOKENS_SCOPE))


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('scope')
