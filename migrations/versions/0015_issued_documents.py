"""issued documents (numbered certificates with a verification code) and per-year number sequences

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-04 17:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engine.orm

revision = '0015'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_sequence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=80), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_sequence')),
    sa.UniqueConstraint('rule', 'year', name='uq_document_sequence_rule_year')
    )
    op.create_table('issued_document',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=80), nullable=False),
    sa.Column('rule', sa.String(length=80), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=120), nullable=False),
    sa.Column('verify_code', sa.String(length=40), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('issuers', sa.JSON(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('issued_at', engine.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('issued_by_id', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['process_instance.id'],
                            name=op.f('fk_issued_document_instance_id_process_instance')),
    sa.ForeignKeyConstraint(['issued_by_id'], ['app_user.id'], name=op.f('fk_issued_document_issued_by_id_app_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_document')),
    sa.UniqueConstraint('instance_id', 'kind', name='uq_issued_document_instance_kind'),
    sa.UniqueConstraint('number', name='uq_issued_document_number'),
    sa.UniqueConstraint('rule', 'year', 'seq', name='uq_issued_document_rule_year_seq'),
    sa.UniqueConstraint('verify_code', name='uq_issued_document_verify_code')
    )
    with op.batch_alter_table('issued_document', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issued_document_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('issued_document', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issued_document_instance_id'))
    op.drop_table('issued_document')
    op.drop_table('document_sequence')
