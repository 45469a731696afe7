"""audit_head: each stream's newest seq and hash, so an append reads and locks one row instead of scanning its stream

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04 21:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('stream', sa.String(length=120), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('stream', name=op.f('pk_audit_head'))
    )
    # Every stream's head as the events have it (the newest seq of each stream).
    op.execute("""
        INSERT INTO audit_head (stream, seq, hash)
        SELECT e.stream, e.seq, e.hash FROM audit_event e
        JOIN (SELECT stream, max(seq) AS seq FROM audit_event GROUP BY stream) last
          ON last.stream = e.stream AND last.seq = e.seq
    """)


def downgrade() -> None:
    op.drop_table('audit_head')
