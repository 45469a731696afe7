"""notice_count: notices queued and dropped per hour, per process instance and per person (the notice cap)

A process owner's BPMN (a loop, a huge multi-instance, a timer firing often) could make the engine send thousands of
notices. Each is now counted here for its instance and its person in its hour; past the caps
(JZFLOW_NOTICE_CAP_INSTANCE_HOUR, JZFLOW_NOTICE_CAP_RECIPIENT_HOUR) it is dropped and counted as such. Empty at first:
the caps start counting with the first notice after the upgrade.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-06 18:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0042'
down_revision = '0041'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'notice_count',
        sa.Column('scope', sa.String(length=40), nullable=False),
        sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('dropped', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'hour', name=op.f('pk_notice_count')),
    )


def downgrade() -> None:
    op.drop_table('notice_count')
