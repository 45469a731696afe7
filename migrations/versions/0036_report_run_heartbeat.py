"""report_run.heartbeat_at: the worker generating a run renews it while it works

A run still running ten minutes after it started was taken for one whose worker died and generated again beside
the first. The worker now renews heartbeat_at every minute (plan/reports/lease.py); a run is taken up again only
when it was not renewed for ten minutes. Runs from before this migration have none: their start counts.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-08 15:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm

revision = '0036'
down_revision = '0035'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', engine.orm.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('report_run', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
