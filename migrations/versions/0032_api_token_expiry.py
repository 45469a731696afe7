"""api_token.expires_at: every API token expires

Tokens were valid until revoked. A token now carries the moment it stops working, chosen at issue (default 90 days,
at most JZFLOW_TOKEN_MAX_DAYS). Tokens issued before this migration expire 90 days (DEFAULT_DAYS of
engine/org/tokens.py, copied here: a migration never changes with the code) after the migration ran, so no client
loses its access on the day of the upgrade; their owners have that long to issue new ones.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-06 12:30:00
"""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import engine.orm
from engine import clock

revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None

EXISTING_TOKENS_DAYS = 90


def upgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', engine.orm.UTCDateTime(timezone=True), nullable=True))
    api_token = sa.table('api_token', sa.column('expires_at', engine.orm.UTCDateTime(timezone=True)))
    op.execute(api_token.update().where(api_token.c.expires_at.is_(None))
               .values(expires_at=clock.now() + timedelta(days=EXISTING_TOKENS_DAYS)))
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=engine.orm.UTCDateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
