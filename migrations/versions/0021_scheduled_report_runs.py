"""report_run: runs the beat produces on schedule (one per kind and period) and whom they go to

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 18:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

SCHEDULED = sa.text("scheduled")


def upgrade() -> None:
    op.add_column('report_run', sa.Column('scheduled', sa.Boolean(), server_default=sa.text('false'), nullable=False))
    op.add_column('report_run', sa.Column('recipients', sa.JSON(), nullable=True))
    op.create_index('uq_report_run_scheduled', 'report_run', ['kind', 'period_start'], unique=True,
                    sqlite_where=SCHEDULED, postgresql_where=SCHEDULED)


def downgrade() -> None:
    op.drop_index('uq_report_run_scheduled', table_name='report_run')
    op.drop_column('report_run', 'recipients')
    op.drop_column('report_run', 'scheduled')
